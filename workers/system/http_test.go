package system_test

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

func TestHTTPTask(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"method":"` + r.Method + `","auth":"` + r.Header.Get("Authorization") + `","body":` + string(body) + `,"n":9007199254740993}`))
		case "/text":
			w.Write([]byte("plain " + r.Header.Get("Content-Type")))
		case "/accept":
			w.Write([]byte(r.Header.Get("Accept")))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "nope", http.StatusTeapot)
		}
	}))
	defer srv.Close()

	tests := []struct {
		name       string
		input      map[string]any
		wantStatus string
		check      func(t *testing.T, res conductor.TaskResult)
	}{
		{"json round trip", map[string]any{"http_request": map[string]any{"uri": srv.URL + "/json", "method": "post",
			"headers": map[string]any{"Authorization": "Bearer t0k"}, "body": map[string]any{"a": int64(1)}}}, conductor.TaskCompleted,
			func(t *testing.T, res conductor.TaskResult) {
				resp := res.OutputData["response"].(map[string]any)
				body := resp["body"].(map[string]any)
				if resp["statusCode"] != int64(200) || body["method"] != "POST" || body["auth"] != "Bearer t0k" ||
					body["n"] != int64(9007199254740993) || body["body"].(map[string]any)["a"] != int64(1) {
					t.Fatalf("response = %#v", resp)
				}
			}},
		{"top-level keys and text", map[string]any{"uri": srv.URL + "/text", "method": "PUT", "body": "hello", "contentType": "text/plain"}, conductor.TaskCompleted,
			func(t *testing.T, res conductor.TaskResult) {
				if got := res.OutputData["response"].(map[string]any)["body"]; got != "plain text/plain" {
					t.Fatalf("body = %#v", got)
				}
			}},
		{"non-2xx fails with the response", map[string]any{"http_request": map[string]any{"uri": srv.URL + "/teapot", "method": "GET"}}, conductor.TaskFailed,
			func(t *testing.T, res conductor.TaskResult) {
				if res.OutputData["response"].(map[string]any)["statusCode"] != int64(418) || !strings.Contains(res.ReasonForIncompletion, "418") {
					t.Fatalf("result = %+v", res)
				}
			}},
		{"output filter", map[string]any{"uri": srv.URL + "/json", "method": "POST", "body": map[string]any{"token": "tk-123"},
			"outputFilter": map[string]any{"_secrets": map[string]any{"token": "${call.output.response.body.body.token}"}, "status": "${call.output.response.statusCode}"}},
			conductor.TaskCompleted, func(t *testing.T, res conductor.TaskResult) {
				if res.OutputData["_secrets"].(map[string]any)["token"] != "tk-123" || res.OutputData["status"] != int64(200) {
					t.Fatalf("filtered output = %#v", res.OutputData)
				}
			}},
		{"asyncComplete stays in progress", map[string]any{"uri": srv.URL + "/text", "method": "GET", "asyncComplete": true}, conductor.TaskInProgress,
			func(t *testing.T, res conductor.TaskResult) {
				if res.OutputData["response"].(map[string]any)["statusCode"] != int64(200) {
					t.Fatalf("result = %+v", res)
				}
			}},
		{"accepts JSON by default, as Conductor", map[string]any{"uri": srv.URL + "/accept", "method": "GET"}, conductor.TaskCompleted,
			func(t *testing.T, res conductor.TaskResult) {
				if got := res.OutputData["response"].(map[string]any)["body"]; got != "application/json" {
					t.Fatalf("Accept = %#v", got)
				}
			}},
		{"accept", map[string]any{"uri": srv.URL + "/accept", "method": "GET", "accept": "text/csv"}, conductor.TaskCompleted,
			func(t *testing.T, res conductor.TaskResult) {
				if got := res.OutputData["response"].(map[string]any)["body"]; got != "text/csv" {
					t.Fatalf("Accept = %#v", got)
				}
			}},
		// RestTemplate reads no body as null, and Conductor stores that.
		{"no body reads null", map[string]any{"uri": srv.URL + "/empty", "method": "DELETE"}, conductor.TaskCompleted,
			func(t *testing.T, res conductor.TaskResult) {
				resp := res.OutputData["response"].(map[string]any)
				if body, ok := resp["body"]; !ok || body != nil || resp["statusCode"] != int64(204) {
					t.Fatalf("response = %#v, want statusCode 204 and body null", resp)
				}
			}},
		{"missing uri", map[string]any{"http_request": map[string]any{"method": "GET"}}, conductor.TaskFailed, nil},
		{"missing method", map[string]any{"http_request": map[string]any{"uri": srv.URL}}, conductor.TaskFailed, nil},
		{"malformed request", map[string]any{"http_request": map[string]any{"uri": 7, "method": "GET"}}, conductor.TaskFailedWithTerminalError, nil},
		{"transport error hides credentials", map[string]any{"http_request": map[string]any{"uri": "http://user:pw@127.0.0.1:1/x?token=s3cr3t", "method": "GET"}}, conductor.TaskFailed,
			func(t *testing.T, res conductor.TaskResult) {
				if strings.Contains(res.ReasonForIncompletion, "s3cr3t") || strings.Contains(res.ReasonForIncompletion, "pw@") {
					t.Fatalf("reason leaks the URL's credentials: %s", res.ReasonForIncompletion)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := system.HTTP{}.Execute(context.Background(), &conductor.Task{ReferenceTaskName: "call", InputData: tt.input})
			if res.Status != tt.wantStatus {
				t.Fatalf("status = %s (%s), want %s", res.Status, res.ReasonForIncompletion, tt.wantStatus)
			}
			if tt.check != nil {
				tt.check(t, res)
			}
		})
	}
	// asyncComplete set on the workflow task, as Conductor also reads it.
	res := system.HTTP{}.Execute(context.Background(), &conductor.Task{ReferenceTaskName: "call",
		InputData: map[string]any{"uri": srv.URL + "/text", "method": "GET"}, WorkflowTask: []byte(`{"asyncComplete":true}`)})
	if res.Status != conductor.TaskInProgress {
		t.Fatalf("workflow task asyncComplete: %s", res.Status)
	}
	// Named in another case, it is not the workflow task's asyncComplete.
	res = system.HTTP{}.Execute(context.Background(), &conductor.Task{ReferenceTaskName: "call",
		InputData: map[string]any{"uri": srv.URL + "/text", "method": "GET"}, WorkflowTask: []byte(`{"AsyncComplete":true}`)})
	if res.Status != conductor.TaskCompleted {
		t.Fatalf("workflow task AsyncComplete: %s, want %s", res.Status, conductor.TaskCompleted)
	}
}

// Redirects are followed within the request's scheme and host only: the
// call's headers may carry resolved secrets, which Go would forward to
// another host. A redirect elsewhere is the call's answer.
func TestHTTPRedirects(t *testing.T) {
	t.Parallel()
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked = append(leaked, r.Header.Get("X-Api-Key"))
	}))
	defer other.Close()
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, otherURL+"/steal", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/here", http.StatusMovedPermanently)
		case "/here":
			w.Write([]byte(r.Header.Get("X-Api-Key")))
		}
	}))
	defer api.Close()
	call := func(path string) conductor.TaskResult {
		return system.HTTP{}.Execute(context.Background(), &conductor.Task{TaskType: "HTTP", ReferenceTaskName: "call",
			InputData: map[string]any{"http_request": map[string]any{"uri": api.URL + path, "method": "GET",
				"headers": map[string]any{"X-Api-Key": "key-0123456789"}}}})
	}
	if res := call("/moved"); res.Status != conductor.TaskCompleted || res.OutputData["response"].(map[string]any)["body"] != "key-0123456789" {
		t.Fatalf("same-host redirect: %+v", res)
	}
	res := call("/away")
	if res.Status != conductor.TaskFailed || res.OutputData["response"].(map[string]any)["statusCode"] != int64(http.StatusFound) {
		t.Fatalf("redirect to another host: %+v", res)
	}
	if len(leaked) != 0 {
		t.Fatalf("the other host received %q", leaked)
	}
}

// Timeouts are bounded: a huge readTimeOut does not overflow into an
// instant failure.
func TestHTTPTimeouts(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	for _, in := range []map[string]any{{"readTimeOut": int64(1) << 62}, {"connectionTimeOut": int64(1) << 62, "readTimeOut": int64(1) << 62}, {"connectionTimeOut": int64(5000)}} {
		req := map[string]any{"uri": srv.URL, "method": "GET"}
		for k, v := range in {
			req[k] = v
		}
		res := system.HTTP{}.Execute(context.Background(), &conductor.Task{TaskType: "HTTP", ReferenceTaskName: "call",
			InputData: map[string]any{"http_request": req}})
		if res.Status != conductor.TaskCompleted {
			t.Errorf("%v: %s %s", in, res.Status, res.ReasonForIncompletion)
		}
	}
}

// Timeouts given as strings count, as Conductor coerces them; one that is
// not a number fails the task, naming it.
func TestHTTPTimeoutsAsStrings(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	tests := []struct {
		timeouts   map[string]any
		wantStatus string
		wantReason string
	}{
		{map[string]any{"readTimeOut": "50"}, conductor.TaskFailed, "timed out"},
		{map[string]any{"connectionTimeOut": " 20 ", "readTimeOut": 30.7}, conductor.TaskFailed, "timed out"},
		{map[string]any{"readTimeOut": "soon"}, conductor.TaskFailedWithTerminalError, "http_request.readTimeOut is not a number of milliseconds"},
		{map[string]any{"connectionTimeOut": true}, conductor.TaskFailedWithTerminalError, "http_request.connectionTimeOut is not a number of milliseconds"},
	}
	for _, tt := range tests {
		req := map[string]any{"uri": srv.URL, "method": "GET"}
		for k, v := range tt.timeouts {
			req[k] = v
		}
		// Far longer than the timeouts given, far shorter than the 60 s
		// default: a timeout ignored ends the call with this context.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res := system.HTTP{}.Execute(ctx, &conductor.Task{TaskType: "HTTP", ReferenceTaskName: "call", InputData: map[string]any{"http_request": req}})
		ended := ctx.Err()
		cancel()
		if res.Status != tt.wantStatus || !strings.Contains(res.ReasonForIncompletion, tt.wantReason) || ended != nil {
			t.Errorf("%v: %s %q (the caller's context: %v), want %s %q", tt.timeouts, res.Status, res.ReasonForIncompletion, ended, tt.wantStatus, tt.wantReason)
		}
	}
}

// A response larger than the limit fails the task, naming the limit: cut
// short, a JSON body would read as a truncated string, silently wrong.
func TestHTTPResponseLimit(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"data":"` + strings.Repeat("x", 1000) + `"}`))
	}))
	defer srv.Close()
	for _, tt := range []struct {
		limit      int64
		wantStatus string
	}{
		{limit: 1011, wantStatus: conductor.TaskCompleted}, // the body's size exactly
		{limit: 1010, wantStatus: conductor.TaskFailedWithTerminalError},
	} {
		res := system.HTTP{MaxResponseBytes: tt.limit}.Execute(context.Background(), &conductor.Task{ReferenceTaskName: "call",
			InputData: map[string]any{"uri": srv.URL, "method": "GET"}})
		if res.Status != tt.wantStatus {
			t.Fatalf("limit %d: status = %s (%s), want %s", tt.limit, res.Status, res.ReasonForIncompletion, tt.wantStatus)
		}
		if tt.wantStatus == conductor.TaskCompleted {
			if body, _ := res.OutputData["response"].(map[string]any)["body"].(map[string]any); len(body["data"].(string)) != 1000 {
				t.Fatalf("limit %d: body = %v", tt.limit, res.OutputData["response"])
			}
			continue
		}
		if !strings.Contains(res.ReasonForIncompletion, "response body over the limit of 1010 bytes") || res.OutputData != nil {
			t.Fatalf("limit %d: result = %+v", tt.limit, res)
		}
	}
}

// A failed call's reason holds no piece of what the request was made of:
// a secret in its uri that the URL's syntax cuts apart ('#', '?', '@', ':')
// reaches Go's errors in pieces that redaction, looking for whole values,
// would miss, and a method is shown only when it is a standard one.
func TestHTTPReasonsNameNoPartOfTheRequest(t *testing.T) {
	t.Parallel()
	var sent atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		http.Error(w, "no", http.StatusNotImplemented)
	}))
	defer srv.Close()
	const secret = "Tr0ub4dor&3x9f8e7d6c#Q9vLk2?s@ss/zz"
	for _, tc := range []struct {
		name, uri, method string
		wantStatus        string
	}{
		{"secret as the password", "https://svc:" + secret + "@api.example.invalid/v1", "GET", conductor.TaskFailedWithTerminalError},
		{"secret after the host", "http://127.0.0.1:1/v1/" + secret, "GET", conductor.TaskFailed},
		{"secret with control characters", "http://127.0.0.1:1/x?k=pw\x7f" + secret, "GET", conductor.TaskFailedWithTerminalError},
		{"secret as the scheme", secret[:12] + "://x/", "GET", conductor.TaskFailedWithTerminalError},
		// Refused before it is sent: the server would echo it upper-cased,
		// which redaction does not look for.
		{"secret as the method", srv.URL, "tr0ub4dor3x9f8e7d6c", conductor.TaskFailedWithTerminalError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := system.HTTP{}.Execute(context.Background(), &conductor.Task{TaskType: "HTTP", ReferenceTaskName: "call",
				InputData: map[string]any{"http_request": map[string]any{"uri": tc.uri, "method": tc.method}}})
			if res.Status != tc.wantStatus {
				t.Fatalf("status = %s (%s), want %s", res.Status, res.ReasonForIncompletion, tc.wantStatus)
			}
			reason := strings.ToLower(res.ReasonForIncompletion)
			for _, part := range strings.FieldsFunc(strings.ToLower(secret), func(r rune) bool { return strings.ContainsRune("&#?@/:", r) }) {
				if len(part) >= 4 && strings.Contains(reason, part) {
					t.Fatalf("reason %q holds %q of the secret", res.ReasonForIncompletion, part)
				}
			}
		})
	}
	if n := sent.Load(); n != 0 {
		t.Fatalf("%d requests reached the server, one with a secret for its method", n)
	}
}

// A query is sent with what may not stand in one percent-encoded (a space,
// non-ASCII), as Conductor's RestTemplate sends it: Go sends it as it is,
// an invalid request line that servers answer 400. What is already encoded
// stays so, and a server echoing the query back has the secret in it
// redacted.
func TestHTTPQueryEscaping(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"q": r.URL.Query()["q"], "k": r.URL.Query().Get("k"), "raw": r.URL.RawQuery})
	}))
	defer srv.Close()
	const secret = "p@ss w!rd-1 ü"
	tests := []struct {
		name, query string
		wantQ       []any
		wantRaw     string
	}{
		{"space and non-ASCII", "q=a b&q=ü", []any{"a b", "ü"}, "q=a%20b&q=%C3%BC"},
		{"already encoded", "q=a%20b+c&q=%2F", []any{"a b c", "/"}, "q=a%20b+c&q=%2F"},
		{"reserved characters kept", "q=a/b?c:d@e!f$(g)*h,i=k", []any{"a/b?c:d@e!f$(g)*h,i=k"}, "q=a/b?c:d@e!f$(g)*h,i=k"},
		{"unsafe characters", `q="<x>"{|}^` + "`", []any{`"<x>"{|}^` + "`"}, "q=%22%3Cx%3E%22%7B%7C%7D%5E%60"},
		{"a secret echoed back", "k=" + secret, nil, "k=***"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := system.HTTP{}.Execute(context.Background(), &conductor.Task{TaskType: "HTTP", ReferenceTaskName: "call",
				InputData: map[string]any{"http_request": map[string]any{"uri": srv.URL + "/search?" + tt.query, "method": "GET"}}})
			if res.Status != conductor.TaskCompleted {
				t.Fatalf("status = %s (%s), response %v", res.Status, res.ReasonForIncompletion, res.OutputData["response"])
			}
			body := res.OutputData["response"].(map[string]any)["body"].(map[string]any)
			if tt.wantQ != nil && !reflect.DeepEqual(body["q"], tt.wantQ) {
				t.Errorf("q = %#v, want %#v", body["q"], tt.wantQ)
			}
			raw := body["raw"].(string)
			if tt.wantQ == nil {
				if body["k"] != secret {
					t.Fatalf("the server read k = %q", body["k"])
				}
				raw = masking.NewRedactor([]byte(secret)).String(raw)
			}
			if raw != tt.wantRaw {
				t.Errorf("raw query = %q, want %q", raw, tt.wantRaw)
			}
		})
	}
}

// post runs an HTTP task POSTing to uri with the request's other fields.
func post(uri string, fields map[string]any) conductor.TaskResult {
	req := map[string]any{"uri": uri, "method": "POST"}
	for k, v := range fields {
		req[k] = v
	}
	return system.HTTP{}.Execute(context.Background(), &conductor.Task{TaskType: "HTTP", ReferenceTaskName: "call",
		InputData: map[string]any{"http_request": req}})
}

// Headers: a null value sends no header, as in Conductor; other values are
// sent as their text in a string template; accept and contentType win over
// headers of their names, which stand when they are not given.
func TestHTTPHeaders(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"accept": r.Header.Values("Accept"), "contentType": r.Header.Values("Content-Type"),
			"trace": r.Header.Values("X-Trace"), "amount": r.Header.Get("X-Amount"), "flag": r.Header.Get("X-Flag")})
	}))
	defer srv.Close()
	tests := []struct {
		name    string
		request map[string]any
		want    map[string]any
	}{
		{"null value", map[string]any{"headers": map[string]any{"X-Trace": nil, "X-Amount": 1500000.5, "X-Flag": true}},
			map[string]any{"trace": nil, "amount": "1500000.5", "flag": "true"}},
		{"no body", map[string]any{}, map[string]any{"contentType": nil}},
		{"no body, a Content-Type header", map[string]any{"headers": map[string]any{"Content-Type": "text/plain"}},
			map[string]any{"contentType": []any{"text/plain"}}},
		{"defaults", map[string]any{"body": "x"},
			map[string]any{"accept": []any{"application/json"}, "contentType": []any{"application/json"}}},
		{"headers of their names", map[string]any{"body": "a=1", "headers": map[string]any{"accept": "text/plain", "Content-Type": "application/x-www-form-urlencoded"}},
			map[string]any{"accept": []any{"text/plain"}, "contentType": []any{"application/x-www-form-urlencoded"}}},
		{"fields win", map[string]any{"body": "x", "accept": "text/csv", "contentType": "text/plain", "headers": map[string]any{"Accept": "text/html", "Content-Type": "text/html"}},
			map[string]any{"accept": []any{"text/csv"}, "contentType": []any{"text/plain"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := post(srv.URL, tt.request)
			if res.Status != conductor.TaskCompleted {
				t.Fatalf("status = %s (%s)", res.Status, res.ReasonForIncompletion)
			}
			got := res.OutputData["response"].(map[string]any)["body"].(map[string]any)
			for k, want := range tt.want {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("%s = %#v, want %#v", k, got[k], want)
				}
			}
		})
	}
}

// An object body under a form's Content-Type is sent as a form; it went as
// JSON, which a server reads as one field named after the whole text.
func TestHTTPFormBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"raw": string(raw), "contentType": r.Header.Get("Content-Type")})
	}))
	defer srv.Close()
	form := map[string]any{"grant_type": "client_credentials", "scope": []any{"a b", "c&d"}, "n": int64(7), "x": 2.5, "ok": true, "none": nil}
	tests := []struct {
		name       string
		request    map[string]any
		wantStatus string
		wantRaw    string
	}{
		{"contentType", map[string]any{"contentType": "application/x-www-form-urlencoded", "body": form}, conductor.TaskCompleted,
			"grant_type=client_credentials&n=7&ok=true&scope=a+b&scope=c%26d&x=2.5"},
		{"header with a charset", map[string]any{"headers": map[string]any{"content-type": "application/x-www-form-urlencoded; charset=utf-8"}, "body": form}, conductor.TaskCompleted,
			"grant_type=client_credentials&n=7&ok=true&scope=a+b&scope=c%26d&x=2.5"},
		{"a string is sent as it is", map[string]any{"contentType": "application/x-www-form-urlencoded", "body": "a=1&b=2"}, conductor.TaskCompleted, "a=1&b=2"},
		{"an object under JSON", map[string]any{"body": map[string]any{"a": "1"}}, conductor.TaskCompleted, `{"a":"1"}`},
		{"a nested object", map[string]any{"contentType": "application/x-www-form-urlencoded", "body": map[string]any{"a": map[string]any{"b": "1"}}},
			conductor.TaskFailedWithTerminalError, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := post(srv.URL, tt.request)
			if res.Status != tt.wantStatus {
				t.Fatalf("status = %s (%s), want %s", res.Status, res.ReasonForIncompletion, tt.wantStatus)
			}
			if tt.wantStatus != conductor.TaskCompleted {
				if !strings.Contains(res.ReasonForIncompletion, "a form's values must be strings, numbers, booleans or lists of them") {
					t.Fatalf("reason = %q", res.ReasonForIncompletion)
				}
				return
			}
			if got := res.OutputData["response"].(map[string]any)["body"].(map[string]any)["raw"]; got != tt.wantRaw {
				t.Errorf("body sent = %q, want %q", got, tt.wantRaw)
			}
		})
	}
}

// A body the server compressed because the task's headers asked for it
// (Accept-Encoding, as a request copied from a browser or Postman sends
// it) is read decoded, as Conductor's HTTP client (Apache HttpClient)
// reads it: Go decodes only what it asked for itself, and the compressed
// bytes were stored as the body's text. An encoding neither knows fails
// the call, as it fails Conductor's.
func TestHTTPContentEncoding(t *testing.T) {
	t.Parallel()
	const doc = `{"ok":true,"items":[1,2,3]}`
	deflated := func(raw bool) []byte {
		var b bytes.Buffer
		if raw {
			w, _ := flate.NewWriter(&b, flate.DefaultCompression)
			w.Write([]byte(doc))
			w.Close()
		} else {
			w := zlib.NewWriter(&b)
			w.Write([]byte(doc))
			w.Close()
		}
		return b.Bytes()
	}
	gzipped := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.Bytes()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := r.URL.Query().Get("enc")
		var body []byte
		switch enc {
		case "gzip", "x-gzip", "GZIP":
			body = gzipped(doc)
		case "deflate":
			body = deflated(false)
		case "raw-deflate":
			enc, body = "deflate", deflated(true)
		case "bomb":
			enc, body = "gzip", gzipped(strings.Repeat("0", 1<<20))
		case "corrupt":
			enc, body = "gzip", gzipped(doc)[:12]
		case "br":
			body = []byte{0x1b, 0x1a, 0x00, 0xf8}
		case "none":
			enc, body = "gzip", nil
		default:
			body = []byte(doc)
		}
		if enc != "" {
			w.Header().Set("Content-Encoding", enc)
		}
		w.Write(body)
	}))
	defer srv.Close()
	want := map[string]any{"ok": true, "items": []any{int64(1), int64(2), int64(3)}}
	tests := []struct {
		name, enc, method string
		wantStatus        string
		wantBody          any
		wantReason        string
	}{
		{"gzip", "gzip", "GET", conductor.TaskCompleted, want, ""},
		{"x-gzip", "x-gzip", "GET", conductor.TaskCompleted, want, ""},
		{"coding names are case-insensitive", "GZIP", "GET", conductor.TaskCompleted, want, ""},
		{"deflate (zlib)", "deflate", "GET", conductor.TaskCompleted, want, ""},
		{"deflate without zlib's wrapping", "raw-deflate", "GET", conductor.TaskCompleted, want, ""},
		{"identity", "identity", "GET", conductor.TaskCompleted, want, ""},
		{"no body", "none", "HEAD", conductor.TaskCompleted, nil, ""},
		{"over the limit once decoded", "bomb", "GET", conductor.TaskFailedWithTerminalError, nil, "over the limit"},
		{"corrupt", "corrupt", "GET", conductor.TaskFailed, nil, "does not decode as its Content-Encoding says"},
		{"an encoding neither reads", "br", "GET", conductor.TaskFailed, nil, "Content-Encoding other than gzip or deflate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := system.HTTP{MaxResponseBytes: 64 << 10}.Execute(context.Background(), &conductor.Task{TaskType: "HTTP", ReferenceTaskName: "call",
				InputData: map[string]any{"http_request": map[string]any{"uri": srv.URL + "/?enc=" + tt.enc, "method": tt.method,
					"headers": map[string]any{"Accept-Encoding": "gzip, deflate, br"}}}})
			if res.Status != tt.wantStatus {
				t.Fatalf("status = %s (%s), want %s", res.Status, res.ReasonForIncompletion, tt.wantStatus)
			}
			if tt.wantStatus != conductor.TaskCompleted {
				if !strings.Contains(res.ReasonForIncompletion, tt.wantReason) {
					t.Fatalf("reason = %q, want %q in it", res.ReasonForIncompletion, tt.wantReason)
				}
				return
			}
			resp := res.OutputData["response"].(map[string]any)
			if !reflect.DeepEqual(resp["body"], tt.wantBody) {
				t.Errorf("body = %#v, want %#v", resp["body"], tt.wantBody)
			}
			// The headers describe the body as stored, as Go's own
			// decoding and Apache HttpClient's leave them; with no body
			// nothing was decoded.
			headers := resp["headers"].(map[string]any)
			if tt.enc != "identity" && tt.wantBody != nil && (headers["Content-Encoding"] != nil || headers["Content-Length"] != nil) {
				t.Errorf("headers = %v: Content-Encoding and Content-Length describe the compressed body", headers)
			}
		})
	}
}

// A body in a charset other than UTF-8 is stored as UTF-8, read by the
// charset its Content-Type names, as Conductor's client reads it: a
// Latin-1 "caf\xe9" was stored as invalid UTF-8 ("caf\ufffd" in views).
func TestHTTPResponseCharset(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.URL.Query().Get("type"))
		w.Write([]byte(r.URL.Query().Get("body")))
	}))
	defer srv.Close()
	for _, tt := range []struct {
		name, contentType, body string
		want                    any
	}{
		{"Latin-1 text", "text/plain; charset=ISO-8859-1", "caf\xe9", "café"},
		{"Latin-1 JSON", "application/json;charset=iso-8859-1", `{"n":"caf` + "\xe9" + `"}`, map[string]any{"n": "café"}},
		{"windows-1252", "text/plain; charset=windows-1252", "\x80 5", "€ 5"},
		{"UTF-16 with its mark", "text/plain; charset=utf-16", "\xff\xfeh\x00i\x00", "hi"},
		{"UTF-8", "text/plain; charset=utf-8", "café", "café"},
		{"no charset", "text/plain", "café", "café"},
		// Not UTF-8 and no charset to read it by: ISO-8859-1.
		{"no charset, not UTF-8", "text/plain", "caf\xe9", "café"},
		{"a charset nobody knows", "text/plain; charset=x-unknown", "caf\xe9", "café"},
		{"UTF-8 declared wrongly", "text/plain; charset=utf-8", "caf\xe9", "café"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := system.HTTP{}.Execute(context.Background(), &conductor.Task{TaskType: "HTTP", ReferenceTaskName: "call",
				InputData: map[string]any{"http_request": map[string]any{"method": "GET",
					"uri": srv.URL + "/?" + url.Values{"type": {tt.contentType}, "body": {tt.body}}.Encode()}}})
			if res.Status != conductor.TaskCompleted {
				t.Fatalf("status = %s (%s)", res.Status, res.ReasonForIncompletion)
			}
			if got := res.OutputData["response"].(map[string]any)["body"]; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("body = %#v, want %#v", got, tt.want)
			}
		})
	}
}

// A server quoting a non-ASCII secret back in Latin-1, declaring no
// charset, has it redacted: the body, read as ISO-8859-1, holds the
// value's UTF-8, which redaction finds. It held the Latin-1 bytes, stored
// so, and read with the value's ASCII in plain text.
func TestHTTPLatin1EchoIsRedacted(t *testing.T) {
	t.Parallel()
	const secret = "Pässwort-Grüße-2024"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Password string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var latin1 []byte
		for _, c := range "<p>Wrong password: " + req.Password + "</p>" {
			latin1 = append(latin1, byte(c))
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write(latin1)
	}))
	defer srv.Close()
	res := post(srv.URL, map[string]any{"body": map[string]any{"password": secret}})
	if res.Status != conductor.TaskFailed {
		t.Fatalf("status = %s (%s), want FAILED", res.Status, res.ReasonForIncompletion)
	}
	body := masking.NewRedactor([]byte(secret)).Map(res.OutputData)["response"].(map[string]any)["body"]
	if want := "<p>Wrong password: ***</p>"; body != want {
		t.Fatalf("redacted body = %q, want %q", body, want)
	}
}
