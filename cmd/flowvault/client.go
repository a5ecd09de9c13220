package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

const clientUsage = `  --server URL     the flowvault server, http://host:port or https://… (default ` + defaultServer + `,
                   $FLOWVAULT_SERVER); redirects are never followed
  --key-file F     access key as JSON {"keyId","keySecret"}; the flag wins over every variable below
  --insecure-plaintext
                   send the access key and the API's data over plain http to a host other than
                   this machine ($FLOWVAULT_INSECURE_PLAINTEXT); refused otherwise
  --tls-client-cert F, --tls-client-key F
                   PEM client certificate and key, for a server with --tls-client-ca-file
                   ($FLOWVAULT_TLS_CLIENT_CERT, $FLOWVAULT_TLS_CLIENT_KEY)
  credentials, when --key-file is not given, in this order: $FLOWVAULT_TOKEN (a token);
  $FLOWVAULT_KEY_ID and $FLOWVAULT_KEY_SECRET; $FLOWVAULT_KEY_FILE; ./data/bootstrap-admin.json
`

// defaultKeyFile is where a server started in the working directory
// writes its bootstrap admin key.
var defaultKeyFile = filepath.Join(".", "data", node.BootstrapFile)

// connection is how a command reaches a server: its URL and credentials.
// Secrets never come from the command line, where every user of the
// machine sees them: the key file or the environment carries them.
type connection struct {
	server string
	// keyFile is --key-file; keyFileGiven says the command line named
	// it, and then it wins over the environment's credentials.
	keyFile      string
	keyFileGiven bool
	// clientCert and clientKey are a client certificate's PEM files, for
	// a server that asks for one (mutual TLS).
	clientCert, clientKey string
	// insecurePlaintext accepts plain http to a host beyond loopback.
	insecurePlaintext bool
}

// clientCommand is one subcommand of a REST API client command.
type clientCommand struct {
	// args is how many positional arguments it takes; with optional, at
	// most that many.
	args     int
	optional bool
	// ids: the arguments go into request paths, where "." or ".." or a
	// slash would be cleaned to another route.
	ids bool
	run func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error
}

// runClientCommands runs the subcommand of command that args name;
// commands declares the subcommands, and their flags on fs.
func runClientCommands(ctx context.Context, command, usage string, commands func(fs *flag.FlagSet) map[string]clientCommand, args []string, stdout, stderr io.Writer) error {
	sub, args, err := subcommand(args, usage, stderr)
	if err != nil {
		return err
	}
	fs, conn := clientFlagSet(command+" "+sub, usage, stderr)
	cmd, ok := commands(fs)[sub]
	if !ok {
		fmt.Fprintf(stderr, "flowvault %s: unknown command %q\n\n%s", command, sub, usage)
		return errUsage
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > cmd.args || !cmd.optional && len(pos) < cmd.args {
		fmt.Fprintf(stderr, "flowvault %s %s: wrong number of arguments\n\n%s", command, sub, usage)
		return errUsage
	}
	for _, p := range pos {
		if cmd.ids {
			if err := checkID(p); err != nil {
				return err
			}
		}
	}
	c, err := conn.client(stderr)
	if err != nil {
		return err
	}
	return cmd.run(ctx, c, pos, stdout)
}

// checkID refuses an argument that goes into a request path where "." or
// ".." or a slash would be cleaned to another route.
func checkID(p string) error {
	if p == "" || p == "." || p == ".." || strings.Contains(p, "/") {
		return fmt.Errorf("%q is not a name or id", p)
	}
	return nil
}

// clientFlagSet is the flag set of a REST API client command, with the
// connection's flags.
func clientFlagSet(name, usage string, stderr io.Writer) (*flag.FlagSet, *connection) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	conn := &connection{}
	conn.flags(fs)
	return fs, conn
}

func (c *connection) flags(fs *flag.FlagSet) {
	c.server = defaultServer
	if v, ok := os.LookupEnv(envName("server")); ok {
		c.server = v
	}
	fs.StringVar(&c.server, "server", c.server, "flowvault server URL ($FLOWVAULT_SERVER)")
	c.clientCert, c.clientKey = os.Getenv(envName("tls-client-cert")), os.Getenv(envName("tls-client-key"))
	fs.StringVar(&c.clientCert, "tls-client-cert", c.clientCert, "PEM client certificate ($FLOWVAULT_TLS_CLIENT_CERT)")
	fs.StringVar(&c.clientKey, "tls-client-key", c.clientKey, "PEM key of --tls-client-cert ($FLOWVAULT_TLS_CLIENT_KEY)")
	fs.Func("key-file", "access key file, JSON {keyId, keySecret}; wins over $FLOWVAULT_TOKEN, $FLOWVAULT_KEY_ID and $FLOWVAULT_KEY_FILE",
		func(s string) error { c.keyFile, c.keyFileGiven = s, true; return nil })
	c.insecurePlaintext, _ = strconv.ParseBool(os.Getenv(envName("insecure-plaintext")))
	fs.BoolVar(&c.insecurePlaintext, "insecure-plaintext", c.insecurePlaintext,
		"send the access key and data over plain http beyond loopback ($FLOWVAULT_INSECURE_PLAINTEXT)")
}

// accessKey is the JSON of a key file (bootstrap-admin.json's format).
type accessKey struct {
	KeyID     string `json:"keyId"`
	KeySecret string `json:"keySecret"`
}

// credentials are what a client signs in with: a token, or an access key
// to mint one with. With neither, missing says which sources were looked
// at, for the server's 401.
type credentials struct {
	token   string
	key     *accessKey
	missing string
	// source says where token or key came from, for a 401: the
	// environment or the default key file are easily forgotten.
	source string
}

// client returns an apiClient for the connection's server, with its
// credentials (see credentials). With none it sends no token, which a
// server with --insecure-dev accepts. Key file warnings go to stderr.
func (c *connection) client(stderr io.Writer) (*apiClient, error) {
	api, err := newAPIClient(c.server)
	if err != nil {
		return nil, err
	}
	// The server refuses plain http beyond loopback unless told to accept
	// it; the client, which sends the access key's secret and secret
	// values, asks the same.
	if u, _ := url.Parse(c.server); u.Scheme == "http" && !node.Loopback(u.Hostname()) && !c.insecurePlaintext {
		return nil, fmt.Errorf("--server %s is plain http to a host other than this machine: the access key and "+
			"the data sent would cross the network in the clear; use https://, or --insecure-plaintext to accept that", api.display)
	}
	if c.clientCert != "" || c.clientKey != "" {
		if c.clientCert == "" || c.clientKey == "" {
			return nil, errors.New("give both --tls-client-cert and --tls-client-key, or neither")
		}
		cert, err := tls.LoadX509KeyPair(c.clientCert, c.clientKey)
		if err != nil {
			return nil, fmt.Errorf("load --tls-client-cert %s and --tls-client-key %s: %w", c.clientCert, c.clientKey, err)
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		api.http.Transport = t
	}
	creds, err := c.credentials(stderr)
	if err != nil {
		return nil, err
	}
	api.token, api.key, api.missing, api.source = creds.token, creds.key, creds.missing, creds.source
	api.notes = stderr
	return api, nil
}

// credentials finds the credentials, the first of: --key-file (a flag
// wins over the environment), $FLOWVAULT_TOKEN, $FLOWVAULT_KEY_ID with
// $FLOWVAULT_KEY_SECRET, $FLOWVAULT_KEY_FILE, ./data/bootstrap-admin.json.
func (c *connection) credentials(stderr io.Writer) (credentials, error) {
	if c.keyFileGiven {
		return keyFileCredentials(c.keyFile, "--key-file", stderr)
	}
	if t := os.Getenv(envName("token")); t != "" {
		return credentials{token: t, source: "the token is $FLOWVAULT_TOKEN's, which wins over every key but --key-file's: " +
			"set a new one, or unset it to sign in with a key"}, nil
	}
	id, secret := os.Getenv(envName("key-id")), os.Getenv(envName("key-secret"))
	switch {
	case id != "" && secret != "":
		return credentials{key: &accessKey{KeyID: id, KeySecret: secret}, source: "the key is $FLOWVAULT_KEY_ID's and $FLOWVAULT_KEY_SECRET's"}, nil
	case id != "" || secret != "":
		return credentials{}, errors.New("set both FLOWVAULT_KEY_ID and FLOWVAULT_KEY_SECRET")
	}
	if p := os.Getenv(envName("key-file")); p != "" {
		return keyFileCredentials(p, "$FLOWVAULT_KEY_FILE", stderr)
	}
	if _, err := os.Stat(defaultKeyFile); !errors.Is(err, fs.ErrNotExist) {
		// Found, not named: in a directory others may write (a shared
		// checkout, /tmp), a file planted there would sign the command
		// in as whoever planted it, and its writes (a secret put) go to
		// them. Only the user's own file is taken.
		if info, err := os.Stat(defaultKeyFile); err == nil {
			if uid, other := ownedByAnother(info); other {
				return credentials{}, fmt.Errorf("the default key file %s belongs to another user (uid %d): it would sign in as "+
					"whoever wrote it; name a key file with --key-file or $FLOWVAULT_KEY_FILE", defaultKeyFile, uid)
			}
		}
		return keyFileCredentials(defaultKeyFile, "the default key file", stderr)
	}
	abs, err := filepath.Abs(defaultKeyFile)
	if err != nil {
		abs = defaultKeyFile
	}
	return credentials{missing: "no credentials were found: no --key-file, no $FLOWVAULT_TOKEN, no $FLOWVAULT_KEY_ID " +
		"and $FLOWVAULT_KEY_SECRET, no $FLOWVAULT_KEY_FILE, and no " + abs}, nil
}

// keyFileCredentials reads the access key of a key file that source
// (a flag, a variable) named, and warns on stderr when other users may
// read it, as the server does of a master key file.
func keyFileCredentials(path, source string, stderr io.Writer) (credentials, error) {
	if strings.TrimSpace(path) == "" {
		return credentials{}, fmt.Errorf("%s is empty: name the key file", source)
	}
	f, err := os.Open(path)
	if err != nil {
		return credentials{}, fmt.Errorf("key file: %w", err)
	}
	where := path
	if source != "--key-file" {
		where = source + " " + path
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && sharedFile(info) {
		fmt.Fprintf(stderr, "flowvault: warning: key file %s is readable by other users (mode %v); chmod 600 it\n", path, info.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	defer clear(b)
	if err != nil {
		return credentials{}, fmt.Errorf("key file: %w", err)
	}
	var key accessKey
	if err := json.Unmarshal(b, &key); err != nil || key.KeyID == "" || key.KeySecret == "" {
		return credentials{}, fmt.Errorf("key file %s: want JSON {\"keyId\":…,\"keySecret\":…}", path)
	}
	return credentials{key: &key, source: "the key is from " + where}, nil
}

// sharedFile reports whether a file's group or other users may read it.
// Windows has no such bits (Go reports 0666 for every writable file).
func sharedFile(info fs.FileInfo) bool {
	return runtime.GOOS != "windows" && info.Mode().Perm()&0o044 != 0
}

// Token requests the server rate-limits (429) are retried after their
// Retry-After, as long as the waits fit in tokenRetryBudget and the tries
// in tokenTries: every run of the CLI mints a token, so a script running
// it in a loop meets the limit, yet a command must not hang for long.
const (
	tokenRetryBudget = 5 * time.Second
	tokenTries       = 4
)

// apiClient calls a flowvault server's REST API.
type apiClient struct {
	base    string // the server's URL, no trailing slash
	display string // base with its userinfo redacted: for messages
	http    *http.Client
	// wait sleeps before a retry, or returns ctx's error; tests replace it.
	wait func(ctx context.Context, d time.Duration) error

	// notes receives what is said about a command's output, not part of
	// it (a page's count): stdout stays what scripts read.
	notes io.Writer

	key     *accessKey
	missing string // no credentials were found: why, for a 401
	source  string // where the credentials came from, for a 401
	once    sync.Once
	token   string
	err     error
}

func newAPIClient(server string) (*apiClient, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want http://host:port (or https://)", redactURL(server))
	}
	return &apiClient{
		base:    strings.TrimRight(server, "/"),
		display: strings.TrimRight(redactURL(server), "/"),
		wait:    sleep,
		http: &http.Client{
			Timeout: 30 * time.Second,
			// Following a redirect would send the request again, with its
			// X-Authorization token or the key secret of POST /api/token,
			// wherever the answer points: another host, or another secret
			// (the router redirects a path it cleans, such as a name ".").
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// redactURL hides the password of a URL's userinfo, also in a string that
// does not parse as a URL with one.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "xxxxx@" + s[i+1:]
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// authenticate mints a token with the access key, once.
func (c *apiClient) authenticate(ctx context.Context) error {
	if c.key == nil {
		return nil
	}
	c.once.Do(func() {
		// A key id not in a key id's form is not shown: with the key's
		// fields swapped, it is the secret.
		key := "the access key (its keyId is not a key id: keyId and keySecret swapped?)"
		if auth.ValidKeyID(c.key.KeyID) {
			key = "key " + c.key.KeyID
		}
		body, _ := json.Marshal(c.key)
		b, err := c.mintToken(ctx, body)
		clear(body)
		if err != nil {
			c.err = fmt.Errorf("sign in with %s: %w", key, err)
			return
		}
		var t struct{ Token string }
		if err := json.Unmarshal(b, &t); err != nil || t.Token == "" {
			c.err = fmt.Errorf("sign in with %s: the server answered no token", key)
			return
		}
		c.token = t.Token
	})
	return c.err
}

// mintToken sends POST /api/token, retrying when rate-limited (see
// tokenRetryBudget).
func (c *apiClient) mintToken(ctx context.Context, body []byte) ([]byte, error) {
	var waited time.Duration
	for try := 1; ; try++ {
		a, err := c.roundTrip(ctx, "POST", "/api/token", "application/json", body)
		if err != nil {
			return nil, err
		}
		d, ok := retryAfter(a, tokenRetryBudget-waited)
		if !ok || try == tokenTries {
			return a.result(c)
		}
		if err := c.wait(ctx, d); err != nil {
			return nil, err
		}
		waited += d
	}
}

// retryAfter says whether a rate-limited answer may be retried within
// budget, and after how long: its Retry-After, in seconds or as a date;
// without one, a second, in which the server's limits refill.
func retryAfter(a *answer, budget time.Duration) (time.Duration, bool) {
	if a.status != http.StatusTooManyRequests {
		return 0, false
	}
	d := time.Second
	v := a.header.Get("Retry-After")
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(time.Until(t), 0)
	}
	return d, d <= budget
}

// do sends one request, signed in, and returns the body of a 2xx answer;
// other answers become errors carrying the server's message.
func (c *apiClient) do(ctx context.Context, method, path, contentType string, body []byte) ([]byte, error) {
	if err := c.authenticate(ctx); err != nil {
		return nil, err
	}
	a, err := c.roundTrip(ctx, method, path, contentType, body)
	if err != nil {
		return nil, err
	}
	return a.result(c)
}

// answer is a server's answer to one request.
type answer struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

func (c *apiClient) roundTrip(ctx context.Context, method, path, contentType string, body []byte) (*answer, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, unwrapURLError(err))
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("X-Authorization", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", c.display, unwrapURLError(err))
	}
	defer resp.Body.Close()
	// An answer may be a secret's value, which its reader wipes.
	b, err := secrets.ReadValue(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("server %s: read the answer to %s %s: %w", c.display, method, path, err)
	}
	return &answer{method: method, path: path, status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// result returns the body of a 2xx answer, or the error the answer means.
func (a *answer) result(c *apiClient) ([]byte, error) {
	switch {
	case a.status/100 == 2:
		return a.body, nil
	case a.status/100 == 3:
		loc := a.header.Get("Location")
		return nil, fmt.Errorf("%s %s: the server answered HTTP %d, a redirect to %q, which flowvault does not follow: check --server %s",
			a.method, a.path, a.status, redactURL(loc), c.display)
	}
	err := a.statusError()
	if a.status == http.StatusUnauthorized {
		switch {
		case c.missing != "":
			err = fmt.Errorf("%w; %s", err, c.missing)
		case c.source != "":
			err = fmt.Errorf("%w; %s", err, c.source)
		}
	}
	return nil, err
}

// statusError carries the server's message of an error answer.
func (a *answer) statusError() error {
	var e conductor.ErrorResponse
	if json.Unmarshal(a.body, &e) == nil && e.Message != "" {
		msg := e.Message
		for _, v := range e.ValidationErrors {
			msg += "; " + v.Path + ": " + v.Message
		}
		return fmt.Errorf("%s (HTTP %d)", msg, a.status)
	}
	return fmt.Errorf("%s %s: HTTP %d", a.method, a.path, a.status)
}

// decodeAnswer decodes the JSON answer to a GET of path. An answer that is
// not what was expected is reported by its size alone: whatever it holds
// (a secret's value, from a misrouted request) must not reach the screen,
// not even as the one character a JSON syntax error names.
// getJSON is GET path, its answer decoded into v.
func (c *apiClient) getJSON(ctx context.Context, path string, v any) error {
	b, err := c.do(ctx, "GET", path, "", nil)
	if err != nil {
		return err
	}
	return decodeAnswer(b, path, v)
}

func decodeAnswer(b []byte, path string, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("the server's answer to %s is not the JSON expected (%d bytes)", path, len(b))
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// getCommand prints what GET path(NAME) answers, indented.
func getCommand(path func(string) string) clientCommand {
	return clientCommand{args: 1, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
		b, err := c.do(ctx, "GET", path(pos[0]), "", nil)
		if err != nil {
			return err
		}
		return printIndented(stdout, b, pos[0])
	}}
}

// deleteCommand sends DELETE path(NAME) and says it is done.
func deleteCommand(path func(string) string) clientCommand {
	return clientCommand{args: 1, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
		if _, err := c.do(ctx, "DELETE", path(pos[0]), "", nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s\n", pos[0])
		return nil
	}}
}

// listCommand prints a line of each item GET path answers, a JSON list.
func listCommand[T any](path string, line func(T) string) clientCommand {
	return clientCommand{run: func(ctx context.Context, c *apiClient, _ []string, stdout io.Writer) error {
		var list []T
		if err := c.getJSON(ctx, path, &list); err != nil {
			return err
		}
		var out bytes.Buffer
		for _, item := range list {
			out.WriteString(line(item) + "\n")
		}
		_, err := out.WriteTo(stdout)
		return err
	}}
}
