package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/node"
)

const appUsage = `usage: flowvault app <command> [flags]

commands:
  create NAME [--role R]... [--out F]  create an application with roles (ADMIN, USER, WORKER,
                                  METADATA_MANAGER, WORKFLOW_MANAGER, USER_READ_ONLY, ...) and an
                                  access key, written as a key file {"keyId","keySecret"} (what
                                  --key-file reads) to F (mode 0600) or stdout; the secret is
                                  shown this once
  list                            list the applications: id, name, creator
  delete ID                       delete an application (its keys stop working)
  role ID ROLE [--remove]         give the application a role, or take it away
  key ID [--out F]                create another access key (at most 20 per application)
  keys ID                         list its access keys: id, status, creation time
  revoke-key ID KEY_ID            delete one of its access keys

flags of every command:
` + clientUsage

func runApp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runClientCommands(ctx, "app", appUsage, appCommands, args, stdout, stderr)
}

// roleList collects repeated --role flags.
type roleList []string

func (r *roleList) String() string { return strings.Join(*r, ",") }
func (r *roleList) Set(v string) error {
	for role := range strings.SplitSeq(v, ",") {
		role = strings.ToUpper(strings.TrimSpace(role))
		if role == "" {
			continue
		}
		// Refused before anything is made: a role the server refuses
		// after the application was created left it half made.
		if !slices.Contains(auth.Roles, role) {
			return fmt.Errorf("unknown role %q: want one of %s", role, strings.Join(auth.Roles, ", "))
		}
		*r = append(*r, role)
	}
	return nil
}

func appCommands(fs *flag.FlagSet) map[string]clientCommand {
	var roles roleList
	var out string
	var remove bool
	switch fs.Name() {
	case "app create":
		fs.Var(&roles, "role", "a role of the application (repeat, or comma-separate)")
		fs.StringVar(&out, "out", "", "write the key file here (0600) instead of stdout")
	case "app key":
		fs.StringVar(&out, "out", "", "write the key file here (0600) instead of stdout")
	case "app role":
		fs.BoolVar(&remove, "remove", false, "take the role away")
	}
	appPath := func(id string) string { return "/api/applications/" + url.PathEscape(id) }
	return map[string]clientCommand{
		"create": {args: 1, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			if out != "" {
				if err := checkOut(out); err != nil {
					return err
				}
			}
			body, _ := json.Marshal(map[string]string{"name": pos[0]})
			b, err := c.do(ctx, "POST", "/api/applications", "application/json", body)
			if err != nil {
				return err
			}
			var app struct{ ID, Name string }
			if err := decodeAnswer(b, "/api/applications", &app); err != nil {
				return err
			}
			for _, role := range roles {
				if _, err := c.do(ctx, "POST", appPath(app.ID)+"/roles/"+url.PathEscape(role), "", nil); err != nil {
					// Not left half made: an application without the roles
					// asked for, and no key, is of use to no one.
					if _, derr := c.do(ctx, "DELETE", appPath(app.ID), "", nil); derr != nil {
						return fmt.Errorf("application %s created, role %s not given: %w (and not deleted again: %v)", app.ID, role, err, derr)
					}
					return fmt.Errorf("role %s not given, application not created: %w", role, err)
				}
			}
			fmt.Fprintf(stdout, "created application %s (%s)\n", app.ID, printable(app.Name))
			return newAccessKey(ctx, c, app.ID, out, stdout)
		}},
		"list": {run: func(ctx context.Context, c *apiClient, _ []string, stdout io.Writer) error {
			var apps []struct{ ID, Name, CreatedBy string }
			if err := c.getJSON(ctx, "/api/applications", &apps); err != nil {
				return err
			}
			for _, a := range apps {
				fmt.Fprintf(stdout, "%s\t%s\t%s\n", a.ID, printable(a.Name), printable(a.CreatedBy))
			}
			return nil
		}},
		"delete": {args: 1, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			if _, err := c.do(ctx, "DELETE", appPath(pos[0]), "", nil); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted application %s\n", pos[0])
			return nil
		}},
		"role": {args: 2, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			method, done := "POST", "gave"
			if remove {
				method, done = "DELETE", "took away"
			}
			role := strings.ToUpper(pos[1])
			if _, err := c.do(ctx, method, appPath(pos[0])+"/roles/"+url.PathEscape(role), "", nil); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s role %s: application %s\n", done, role, pos[0])
			return nil
		}},
		"key": {args: 1, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			if out != "" {
				if err := checkOut(out); err != nil {
					return err
				}
			}
			return newAccessKey(ctx, c, pos[0], out, stdout)
		}},
		"keys": {args: 1, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			var keys []struct {
				ID        string
				Status    string
				CreatedAt int64
			}
			if err := c.getJSON(ctx, appPath(pos[0])+"/accessKeys", &keys); err != nil {
				return err
			}
			for _, k := range keys {
				fmt.Fprintln(stdout, row(k.ID, k.Status, time.UnixMilli(k.CreatedAt).UTC().Format(time.RFC3339)))
			}
			return nil
		}},
		"revoke-key": {args: 2, ids: true, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			if _, err := c.do(ctx, "DELETE", appPath(pos[0])+"/accessKeys/"+url.PathEscape(pos[1]), "", nil); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted access key %s of application %s\n", pos[1], pos[0])
			return nil
		}},
	}
}

// newAccessKey creates an access key of application id and writes it as a
// key file: to out (0600), else to stdout.
func newAccessKey(ctx context.Context, c *apiClient, id, out string, stdout io.Writer) error {
	b, err := c.do(ctx, "POST", "/api/applications/"+url.PathEscape(id)+"/accessKeys", "", nil)
	defer clear(b)
	if err != nil {
		return err
	}
	var key struct{ ID, Secret string }
	if json.Unmarshal(b, &key) != nil || key.ID == "" || key.Secret == "" {
		return errors.New("the server answered no access key")
	}
	file, err := json.Marshal(accessKey{KeyID: key.ID, KeySecret: key.Secret})
	defer clear(file)
	if err != nil {
		return err
	}
	file = append(file, '\n')
	if out == "" {
		_, err := stdout.Write(file)
		return err
	}
	if err := node.WritePrivateFile(out, file); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote access key %s of application %s to %s\n", key.ID, id, out)
	return nil
}
