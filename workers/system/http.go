// Package system holds the engine's system workers: task types flowvault
// runs itself rather than handing to workers. HTTP performs calls; Inline
// (INLINE, LAMBDA), Switch (JavaScript SWITCH and DECISION cases),
// LoopCondition (DO_WHILE conditions) and JQ (JSON_JQ_TRANSFORM) run user
// code, each run bounded by a Budget (js.go, budget.go).
package system

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/ianaindex"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// HTTP runs Conductor's HTTP task: the request described by
// inputParameters.http_request (or the same keys at the top level).
type HTTP struct {
	// Client performs the requests; nil means one that follows redirects
	// within the request's host only (sameHostRedirects).
	Client *http.Client
	// MaxResponseBytes bounds the response body (4 MiB when 0): a larger
	// one fails the task.
	MaxResponseBytes int64
}

type httpRequest struct {
	URI         string          `json:"uri"`
	Method      string          `json:"method"`
	Headers     map[string]any  `json:"headers"`
	Body        json.RawMessage `json:"body"`
	Accept      string          `json:"accept"`
	ContentType string          `json:"contentType"`
	// Timeouts in milliseconds, read by timeoutMillis.
	ConnectionTimeOut int64 `json:"-"`
	ReadTimeOut       int64 `json:"-"`
}

// timeoutMillis reads a timeout in milliseconds. Conductor reads it into
// an Integer with Jackson's coercions: workflows written for it pass
// "5000" as often as 5000, and a fraction is cut to its whole part.
func timeoutMillis(v any) (int64, error) {
	var f float64
	switch v := v.(type) {
	case nil:
		return 0, nil
	case int64:
		return max(v, 0), nil
	case int:
		return max(int64(v), 0), nil
	case float64:
		f = v
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
			return 0, errors.New("is not a number of milliseconds")
		}
	default:
		return 0, errors.New("is not a number of milliseconds")
	}
	if math.IsNaN(f) {
		return 0, errors.New("is not a number of milliseconds")
	}
	return int64(max(min(f, math.MaxInt64/2), 0)), nil
}

// Execute performs the call. A 2xx answer completes the task; any other
// status, or a transport error, fails it (retried per the task definition).
func (h HTTP) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	req, err := parseHTTPRequest(t.InputData)
	if err != nil {
		// A missing uri or method fails the task as in Conductor, to be
		// retried: a retry evaluates the task's parameters again, and
		// the data they read may be there by then.
		status := conductor.TaskFailedWithTerminalError
		if errors.Is(err, errMissingField) {
			status = conductor.TaskFailed
		}
		return failed(status, "HTTP task %s: %v", t.ReferenceTaskName, err)
	}
	timeout := callTimeout(req)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hasBody := len(req.Body) > 0 && string(req.Body) != "null"
	header := requestHeader(req, hasBody)
	var body io.Reader
	if hasBody {
		if body, err = requestBody(req.Body, header.Get("Content-Type")); err != nil {
			return failed(conductor.TaskFailedWithTerminalError, "HTTP task %s: %v", t.ReferenceTaskName, err)
		}
	}
	hreq, err := http.NewRequestWithContext(ctx, req.Method, req.URI, body)
	if err != nil {
		return failed(conductor.TaskFailedWithTerminalError, "HTTP task %s: %s", t.ReferenceTaskName, requestError(err))
	}
	if hreq.URL.Scheme != "http" && hreq.URL.Scheme != "https" || hreq.URL.Host == "" {
		return failed(conductor.TaskFailedWithTerminalError, "HTTP task %s: the uri must be an absolute http or https URL", t.ReferenceTaskName)
	}
	hreq.URL.RawQuery = escapeQuery(hreq.URL.RawQuery)
	hreq.Header = header
	client := h.Client
	if client == nil {
		client = &http.Client{Timeout: timeout, CheckRedirect: sameHostRedirects}
	}
	res, err := client.Do(hreq)
	if err != nil {
		return failed(conductor.TaskFailed, "HTTP task %s: %s: %s", t.ReferenceTaskName, methodName(req.Method), transportError(err))
	}
	defer res.Body.Close()
	limit := h.MaxResponseBytes
	if limit <= 0 {
		limit = 4 << 20
	}
	body, decoded, err := decodedBody(res)
	var raw []byte
	if err == nil {
		raw, err = io.ReadAll(io.LimitReader(body, limit+1))
	}
	if err != nil {
		return failed(conductor.TaskFailed, "HTTP task %s: reading the response: %s", t.ReferenceTaskName, transportError(err))
	}
	if int64(len(raw)) > limit {
		// Cut short, the body would be stored as if whole: a JSON body
		// turned into a truncated string. Terminal, as Conductor fails a
		// task whose output is over its payload limit.
		return failed(conductor.TaskFailedWithTerminalError, "HTTP task %s: %s answered with a response body over the limit of %d bytes",
			t.ReferenceTaskName, methodName(req.Method), limit)
	}
	if decoded {
		// They described the body as sent, not as stored, and Go's own
		// decoding and Conductor's client both drop them.
		res.Header.Del("Content-Encoding")
		res.Header.Del("Content-Length")
	}
	headers := map[string]any{}
	for k, v := range res.Header {
		vals := make([]any, len(v))
		for i, s := range v {
			vals[i] = s
		}
		headers[k] = vals
	}
	text := inCharset(raw, res.Header.Get("Content-Type"))
	response := map[string]any{"statusCode": int64(res.StatusCode), "reasonPhrase": http.StatusText(res.StatusCode),
		"headers": headers, "body": decodeBody(text)}
	// An answer may echo what it was sent: decoded, the body is copied.
	clear(raw)
	clear(text)
	out := map[string]any{"response": response}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		r := failed(conductor.TaskFailed, "HTTP task %s: %s answered %d", t.ReferenceTaskName, methodName(req.Method), res.StatusCode)
		r.OutputData = out
		return r
	}
	if err := applyOutputFilter(t, out); err != nil {
		return failed(conductor.TaskFailedWithTerminalError, "HTTP task %s: outputFilter: %v", t.ReferenceTaskName, err)
	}
	if asyncComplete(t) {
		// Done calling: the task waits for an update from outside.
		return conductor.TaskResult{Status: conductor.TaskInProgress, OutputData: out}
	}
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: out}
}

// requestHeader is the request's headers: those headers gives, accept and
// contentType set over them when given, and Conductor's application/json
// when neither gives one (Content-Type only for a request with a body). A
// header of headers used to be replaced by the default: a Content-Type
// written there sent a form labelled as JSON.
func requestHeader(req *httpRequest, hasBody bool) http.Header {
	header := http.Header{}
	for k, v := range req.Headers {
		if v == nil {
			// Conductor sends no header for a null value (a ${...} of
			// an input not given), where fmt.Sprint wrote "<nil>".
			continue
		}
		header.Set(k, expr.Text(v))
	}
	for _, f := range []struct{ key, field string }{{"Accept", req.Accept}, {"Content-Type", req.ContentType}} {
		switch {
		case f.key == "Content-Type" && !hasBody:
			// Nothing to describe: only one headers gives is sent.
		case f.field != "":
			header.Set(f.key, f.field)
		case header.Get(f.key) == "":
			header.Set(f.key, "application/json") // Conductor's default
		}
	}
	return header
}

// requestBody is what body sends: a JSON string as its text, an object
// under a form's Content-Type as a form (Conductor refuses to send it;
// sent as JSON, a server reads it as one field named after the whole
// text), anything else as JSON.
func requestBody(body json.RawMessage, contentType string) (io.Reader, error) {
	var s string
	if json.Unmarshal(body, &s) == nil {
		return strings.NewReader(s), nil
	}
	if mt, _, _ := mime.ParseMediaType(contentType); mt != "application/x-www-form-urlencoded" || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return bytes.NewReader(body), nil
	}
	var fields map[string]any
	if err := conductor.Unmarshal(body, &fields); err != nil {
		return nil, errors.New("http_request.body is not a JSON object")
	}
	form := url.Values{}
	for k, v := range fields {
		vals, ok := v.([]any)
		if !ok {
			vals = []any{v}
		}
		for _, e := range vals {
			switch e.(type) {
			case nil:
				// No field, as a null header sends none.
			case map[string]any, []any:
				return nil, errors.New("http_request.body: a form's values must be strings, numbers, booleans or lists of them")
			default:
				form.Add(k, expr.Text(e))
			}
		}
	}
	return strings.NewReader(form.Encode()), nil
}

// maxCallTimeout bounds a call's connection and read timeouts: the
// engine ends a system task's run at three quarters of its five-minute
// lease (225 s), and a call must end before that, its body read and its
// result reported, for its timeout to be the one the task fails with.
const maxCallTimeout = 3 * time.Minute

// callTimeout is the call's timeout: connectionTimeOut plus readTimeOut
// (ms), each set alone counting too; 60 s when neither is set.
func callTimeout(req *httpRequest) time.Duration {
	ms := func(v int64) time.Duration {
		return time.Duration(min(max(v, 0), maxCallTimeout.Milliseconds())) * time.Millisecond
	}
	if t := ms(req.ConnectionTimeOut) + ms(req.ReadTimeOut); t > 0 {
		return min(t, maxCallTimeout)
	}
	return 60 * time.Second
}

// sameHostRedirects follows a redirect only to the request's own scheme
// and host: the call's headers carry resolved secrets (an API key in a
// custom header), which Go forwards to another host, where it strips only
// Authorization and Cookie. Any other redirect is the call's answer: the
// task fails with its 3xx status.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	switch {
	case len(via) >= 10:
		return errTooManyRedirects
	case req.URL.Host != first.Host || req.URL.Scheme != first.Scheme:
		return http.ErrUseLastResponse
	}
	return nil
}

// asyncComplete reports Conductor's asyncComplete, from the task's input
// or its workflow task: the task stays IN_PROGRESS after the call until a
// task update completes it.
func asyncComplete(t *conductor.Task) bool {
	if v, ok := t.InputData["asyncComplete"].(bool); ok {
		return v
	}
	var wt struct {
		AsyncComplete bool `json:"asyncComplete"`
	}
	return len(t.WorkflowTask) > 0 && conductor.Unmarshal(t.WorkflowTask, &wt) == nil && wt.AsyncComplete
}

// applyOutputFilter adds the keys of the task's outputFilter (Orkes): a
// template evaluated against the task's own output once the call is done,
// written with $${...} in the definition so that it is not evaluated when
// the task is scheduled. The rotation recipe uses it to put a fetched token
// under _secrets, where the engine seals it before storing.
func applyOutputFilter(t *conductor.Task, out map[string]any) error {
	filter, ok := t.InputData["outputFilter"].(map[string]any)
	if !ok {
		if hr, ok2 := t.InputData["http_request"].(map[string]any); ok2 {
			filter, ok = hr["outputFilter"].(map[string]any)
		}
	}
	if !ok {
		return nil
	}
	v, _, err := expr.Evaluate(filter, expr.MapDoc{t.ReferenceTaskName: map[string]any{"output": out}})
	if err != nil {
		return err
	}
	for k, e := range v.(map[string]any) {
		out[k] = e
	}
	return nil
}

var errMissingField = errors.New("is required")

func parseHTTPRequest(input map[string]any) (*httpRequest, error) {
	src := input
	if hr, ok := input["http_request"].(map[string]any); ok {
		src = hr
	}
	b, err := json.Marshal(src)
	if err != nil {
		return nil, err
	}
	defer clear(b) // the resolved input: req holds copies of what it needs
	var req httpRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("http_request: %v", err)
	}
	for _, f := range []struct {
		key string
		ms  *int64
	}{{"connectionTimeOut", &req.ConnectionTimeOut}, {"readTimeOut", &req.ReadTimeOut}} {
		if *f.ms, err = timeoutMillis(src[f.key]); err != nil {
			return nil, fmt.Errorf("http_request.%s %v", f.key, err)
		}
	}
	if req.URI == "" {
		return nil, fmt.Errorf("http_request.uri %w", errMissingField)
	}
	if req.Method == "" {
		return nil, fmt.Errorf("http_request.method %w", errMissingField)
	}
	req.Method = strings.ToUpper(req.Method)
	if methodName(req.Method) != req.Method {
		// Not quoted, nor sent: it may be a resolved secret, which the
		// upper-casing turned into text redaction does not look for.
		return nil, errors.New("http_request.method is not a standard HTTP method (GET, HEAD, POST, PUT, PATCH, DELETE, CONNECT, OPTIONS or TRACE)")
	}
	return &req, nil
}

// decodeBody keeps a JSON response as JSON and anything else as text; no
// body is null, as RestTemplate gives Conductor's HTTP task (a 204, an
// empty 200), not "".
func decodeBody(raw []byte) any {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if conductor.Unmarshal(raw, &v) == nil {
		return v
	}
	return string(raw)
}

// inCharset is raw read from the charset contentType names, as UTF-8, as
// Conductor's client (Spring's StringHttpMessageConverter) reads a body
// by its charset: a Latin-1 "caf\xe9" was stored as invalid UTF-8, and
// read "caf\ufffd" in every view. UTF-8, no charset or one it does not
// know leave raw as it is, unless it is not UTF-8: then it is read as
// ISO-8859-1, as Conductor's client reads text that names no charset.
// Kept as it was, a value the server echoed in Latin-1 (a non-ASCII
// password quoted back by a server that declares no charset, or declares
// UTF-8 wrongly) was stored in that encoding, which redaction, looking
// for the value's UTF-8 and its forms, does not find, and read with its
// non-ASCII characters as U+FFFD and the rest in plain text.
func inCharset(raw []byte, contentType string) []byte {
	if len(raw) == 0 {
		return raw
	}
	_, params, _ := mime.ParseMediaType(contentType)
	switch cs := strings.ToLower(strings.TrimSpace(params["charset"])); cs {
	case "", "utf-8", "utf8", "us-ascii":
	default:
		if enc, err := ianaindex.IANA.Encoding(cs); err == nil && enc != nil {
			if out, err := enc.NewDecoder().Bytes(raw); err == nil {
				return out
			}
		}
	}
	if utf8.Valid(raw) {
		return raw
	}
	out := make([]byte, 0, 2*len(raw))
	for _, c := range raw { // ISO-8859-1's bytes are U+0000 to U+00FF
		out = utf8.AppendRune(out, rune(c))
	}
	return out
}

func failed(status, format string, args ...any) conductor.TaskResult {
	return conductor.TaskResult{Status: status, ReasonForIncompletion: fmt.Sprintf(format, args...)}
}

// A failure's reason names no part of the request but a standard method:
// its uri, method and headers may hold resolved secrets, and a secret that
// the URL's syntax cuts (a '#', '?' or '@' in it) reaches Go's errors in
// pieces, which redaction, looking for whole values, does not recognise.
// The task's input as stored shows the request with its references
// unresolved.

// methodName is the request's method if it is a standard one.
func methodName(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "the request"
}

// requestError says what http.NewRequestWithContext refused: the URL, or
// else (its context is never nil here) the method.
func requestError(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return "the uri is not a valid URL"
	}
	return "the method is not a valid HTTP method"
}

// escapeQuery percent-encodes the bytes a query may not hold as they are
// (a space, non-ASCII, "<>\^`{|}), which Go sends unescaped: a uri built
// as ?q=${workflow.input.name} with a space in the name would make an
// invalid request line, which servers answer 400, where Conductor's
// RestTemplate encodes it. Every other byte, a '%' included, stays as it
// is, so that a query already encoded is sent unchanged. masking's
// percentStyles hold this encoding, so that a server echoing the query
// back has a secret in it redacted.
func escapeQuery(q string) string {
	if !strings.ContainsFunc(q, queryEscaped) {
		return q
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if c := q[i]; queryEscaped(rune(c)) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// queryEscaped reports whether escapeQuery encodes r (a byte of the query:
// ContainsFunc's U+FFFD for a byte that is not UTF-8 is non-ASCII too).
func queryEscaped(r rune) bool {
	return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"<>\^`+"`{|}", r)
}

// decodedBody is the response's body decoded as its Content-Encoding
// says, and whether there was any decoding to do. Go decodes a gzip body
// only when it asked for one itself; a task whose headers ask
// (Accept-Encoding, as a request copied from a browser or Postman sends
// it) got the compressed bytes, stored as the body's text, where
// Conductor's client (Apache HttpClient) decodes gzip and deflate
// whoever asked. As there, another coding fails the call: its bytes are
// not the body. The size limit applies to the decoded body, which the
// caller reads through its LimitReader, so a small body that inflates
// to gigabytes stops at the limit.
func decodedBody(res *http.Response) (io.Reader, bool, error) {
	var codings []string
	for _, v := range res.Header.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	if len(codings) == 0 || res.Uncompressed {
		return res.Body, false, nil
	}
	src := &sourceBody{r: bufio.NewReader(res.Body)}
	if _, err := src.r.Peek(1); err == io.EOF {
		return src.r, false, nil // no body to decode: a HEAD's, a 204's
	}
	var r io.Reader = src
	// The codings are listed in the order they were applied.
	for _, c := range slices.Backward(codings) {
		var err error
		switch c {
		case "gzip", "x-gzip":
			r, err = gzip.NewReader(r)
		case "deflate":
			r, err = inflater(r)
		default:
			return nil, false, errUnknownEncoding
		}
		if err != nil {
			return nil, false, src.decodeError(err)
		}
	}
	return &decodingBody{r: r, src: src}, true, nil
}

// inflater reads deflate as HTTP means it, zlib's format, or as servers
// also send it, the raw stream, as Apache HttpClient accepts both.
func inflater(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	if h, err := br.Peek(2); err == nil && h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 {
		return zlib.NewReader(br)
	}
	return flate.NewReader(br), nil
}

// sourceBody keeps the error reading the response itself, so that an
// error of the decoding above it is told apart from the transport's.
type sourceBody struct {
	r   *bufio.Reader
	err error
}

func (s *sourceBody) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// decodeError is err as the decoding's fault unless the body's transport
// failed: a truncated stream's io.ErrUnexpectedEOF, a corrupt one's own
// error, never text taken from the body.
func (s *sourceBody) decodeError(err error) error {
	if err == nil || err == io.EOF || s.err != nil {
		return err
	}
	return errBodyEncoding
}

// decodingBody reads a decoded body, its errors told apart by src.
type decodingBody struct {
	r   io.Reader
	src *sourceBody
}

func (d *decodingBody) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	return n, d.src.decodeError(err)
}

var (
	errUnknownEncoding = errors.New("the response has a Content-Encoding other than gzip or deflate (send Accept-Encoding: gzip, or none)")
	errBodyEncoding    = errors.New("the response body does not decode as its Content-Encoding says")
)

// errTooManyRedirects ends a chain of same-host redirects.
var errTooManyRedirects = errors.New("stopped after 10 redirects")

// transportError says what kind of failure err is.
func transportError(err error) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, errTooManyRedirects):
		return errTooManyRedirects.Error()
	case errors.Is(err, errUnknownEncoding):
		return errUnknownEncoding.Error()
	case errors.Is(err, errBodyEncoding):
		return errBodyEncoding.Error()
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return "timed out"
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "no such host"
	case errors.As(err, &dnsErr):
		return "the host name could not be looked up"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the server"
	case errors.As(err, &certErr):
		return "the server's TLS certificate is not trusted"
	case errors.As(err, &recordErr):
		return "the server did not answer in TLS"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the connection"
	}
	return "the request failed"
}
