package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

const clientUsage = `  --server URL     the flowvault server (default ` + defaultServer + `, $FLOWVAULT_SERVER)
  --key-file F     access key as JSON {"keyId","keySecret"} ($FLOWVAULT_KEY_FILE; default
                   ./data/bootstrap-admin.json when it exists)
  $FLOWVAULT_KEY_ID and $FLOWVAULT_KEY_SECRET, or $FLOWVAULT_TOKEN, instead of a key file
`

// connection is how a command reaches a server: its URL and credentials.
// Secrets never come from the command line, where every user of the
// machine sees them: the key file or the environment carries them.
type connection struct {
	server  string
	keyFile string
}

func (c *connection) flags(fs *flag.FlagSet) {
	c.server = defaultServer
	if v, ok := os.LookupEnv(envName("server")); ok {
		c.server = v
	}
	c.keyFile = os.Getenv(envName("key-file"))
	fs.StringVar(&c.server, "server", c.server, "flowvault server URL ($FLOWVAULT_SERVER)")
	fs.StringVar(&c.keyFile, "key-file", c.keyFile, "access key file, JSON {keyId, keySecret} ($FLOWVAULT_KEY_FILE)")
}

// accessKey is the JSON of a key file (bootstrap-admin.json's format).
type accessKey struct {
	KeyID     string `json:"keyId"`
	KeySecret string `json:"keySecret"`
}

// client returns an apiClient with the connection's credentials: a token
// from $FLOWVAULT_TOKEN, or one minted with the access key of the key
// file or $FLOWVAULT_KEY_ID/$FLOWVAULT_KEY_SECRET. With none of them it
// sends no token, which a server with --insecure-dev accepts.
func (c *connection) client() (*apiClient, error) {
	api := &apiClient{base: strings.TrimRight(c.server, "/"), http: &http.Client{Timeout: 30 * time.Second},
		token: os.Getenv(envName("token"))}
	if api.token != "" {
		return api, nil
	}
	if id, secret := os.Getenv(envName("key-id")), os.Getenv(envName("key-secret")); id != "" || secret != "" {
		if id == "" || secret == "" {
			return nil, errors.New("set both FLOWVAULT_KEY_ID and FLOWVAULT_KEY_SECRET")
		}
		api.key = &accessKey{KeyID: id, KeySecret: secret}
		return api, nil
	}
	path := c.keyFile
	if path == "" {
		path = filepath.Join(".", "data", "bootstrap-admin.json")
		if _, err := os.Stat(path); err != nil {
			return api, nil
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	var key accessKey
	if err := json.Unmarshal(b, &key); err != nil || key.KeyID == "" || key.KeySecret == "" {
		return nil, fmt.Errorf("key file %s: want JSON {\"keyId\":…,\"keySecret\":…}", path)
	}
	api.key = &key
	return api, nil
}

// apiClient calls a flowvault server's REST API.
type apiClient struct {
	base string
	http *http.Client

	key   *accessKey
	once  sync.Once
	token string
	err   error
}

// authenticate mints a token with the access key, once.
func (c *apiClient) authenticate(ctx context.Context) error {
	if c.key == nil {
		return nil
	}
	c.once.Do(func() {
		body, _ := json.Marshal(c.key)
		b, err := c.send(ctx, "POST", "/api/token", "application/json", body)
		if err != nil {
			c.err = fmt.Errorf("sign in with key %s: %w", c.key.KeyID, err)
			return
		}
		var t struct{ Token string }
		if err := json.Unmarshal(b, &t); err != nil || t.Token == "" {
			c.err = fmt.Errorf("sign in with key %s: the server answered no token", c.key.KeyID)
			return
		}
		c.token = t.Token
	})
	return c.err
}

// do sends one request, signed in, and returns the body of a 2xx answer;
// other answers become errors carrying the server's message.
func (c *apiClient) do(ctx context.Context, method, path, contentType string, body []byte) ([]byte, error) {
	if err := c.authenticate(ctx); err != nil {
		return nil, err
	}
	return c.send(ctx, method, path, contentType, body)
}

func (c *apiClient) send(ctx context.Context, method, path, contentType string, body []byte) ([]byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("X-Authorization", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	var e conductor.ErrorResponse
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		msg := e.Message
		for _, v := range e.ValidationErrors {
			msg += "; " + v.Path + ": " + v.Message
		}
		return nil, fmt.Errorf("%s (HTTP %d)", msg, resp.StatusCode)
	}
	return nil, fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
}
