package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/auth"
)

const grantUsage = `usage: flowvault grant <command> [flags]

commands:
  add SUBJECT TARGET ACCESS       grant ACCESS on TARGET to SUBJECT; ACCESS is comma-separated:
                                  CREATE, READ, UPDATE, DELETE, EXECUTE
  remove SUBJECT TARGET ACCESS    withdraw it
  list SUBJECT                    the grants SUBJECT holds: target, access
  on TARGET                       the grants on TARGET: subject, access

SUBJECT is app:ID, user:ID, group:ID or role:NAME. TARGET is TYPE:ID, such as
SECRET_NAME:db_password, TAG:env:prod (every secret, definition... tagged env=prod),
WORKFLOW_DEF:order_flow, TASK_DEF:charge, ENV_VARIABLE:region, WORKFLOW_SCHEDULE:nightly,
DOMAIN:eu (every task type in domain eu's queue).

flags of every command:
` + clientUsage

func runGrant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runClientCommands(ctx, "grant", grantUsage, grantCommands, args, stdout, stderr)
}

type subjectRef struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// parseSubject reads app:ID, user:ID, group:ID or role:NAME. An
// application acts as the user "app:ID".
func parseSubject(s string) (subjectRef, error) {
	kind, id, ok := strings.Cut(s, ":")
	if ok && id != "" && id != "." && id != ".." {
		switch strings.ToLower(kind) {
		case "app":
			return subjectRef{"USER", "app:" + id}, nil
		case "user":
			return subjectRef{"USER", id}, nil
		case "group":
			return subjectRef{"GROUP", id}, nil
		case "role":
			return subjectRef{"ROLE", strings.ToUpper(id)}, nil
		}
	}
	return subjectRef{}, fmt.Errorf("subject %q: want app:ID, user:ID, group:ID or role:NAME", s)
}

// parseTarget reads TYPE:ID; the id may hold colons (TAG:key:value).
func parseTarget(s string) (subjectRef, error) {
	kind, id, ok := strings.Cut(s, ":")
	if !ok || kind == "" || id == "" || id == "." || id == ".." {
		return subjectRef{}, fmt.Errorf("target %q: want TYPE:ID, such as SECRET_NAME:db_password or TAG:env:prod", s)
	}
	return subjectRef{strings.ToUpper(kind), id}, nil
}

func grantCommands(*flag.FlagSet) map[string]clientCommand {
	change := func(revoke bool) clientCommand {
		return clientCommand{args: 3, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			sub, err := parseSubject(pos[0])
			if err != nil {
				return err
			}
			target, err := parseTarget(pos[1])
			if err != nil {
				return err
			}
			var access []string
			for a := range strings.SplitSeq(pos[2], ",") {
				if a = strings.TrimSpace(a); a == "" {
					continue
				}
				parsed, err := auth.ParseAccess(a)
				if err != nil {
					return err
				}
				access = append(access, string(parsed))
			}
			on := target.Type + ":" + target.ID
			body, _ := json.Marshal(map[string]any{"subject": sub, "target": target, "access": access})
			if !revoke {
				if _, err := c.do(ctx, "POST", "/api/auth/authorization", "application/json", body); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "granted %s on %s to %s\n", strings.Join(access, ","), on, pos[0])
				return nil
			}
			// The API takes withdrawing what is not held as done, so a
			// mistyped subject would read as a revocation that happened.
			bySubject, err := grantsBySubject(ctx, c, target)
			if err != nil {
				return err
			}
			held := bySubject[sub.Type+":"+sub.ID]
			withdrawn := slices.DeleteFunc(slices.Clone(access), func(a string) bool { return !slices.Contains(held, a) })
			if len(withdrawn) == 0 {
				fmt.Fprintf(stdout, "%s holds none of %s on %s by a grant of its own: nothing withdrawn\n", pos[0], strings.Join(access, ","), on)
				return nil
			}
			if _, err := c.do(ctx, "DELETE", "/api/auth/authorization", "application/json", body); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "withdrew %s on %s from %s", strings.Join(withdrawn, ","), on, pos[0])
			if notHeld := slices.DeleteFunc(access, func(a string) bool { return slices.Contains(held, a) }); len(notHeld) > 0 {
				fmt.Fprintf(stdout, " (%s was not held)", strings.Join(notHeld, ","))
			}
			fmt.Fprintln(stdout)
			return nil
		}}
	}
	return map[string]clientCommand{
		"add":    change(false),
		"remove": change(true),
		"list": {args: 1, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			sub, err := parseSubject(pos[0])
			if err != nil {
				return err
			}
			var grants []struct {
				Target subjectRef
				Access []string
			}
			if err := c.getJSON(ctx, "/api/auth/subjects/"+url.PathEscape(sub.Type)+"/"+url.PathEscape(sub.ID)+"/grants", &grants); err != nil {
				return err
			}
			for _, g := range grants {
				fmt.Fprintf(stdout, "%s:%s\t%s\n", g.Target.Type, printable(g.Target.ID), strings.Join(g.Access, ","))
			}
			return nil
		}},
		"on": {args: 1, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			target, err := parseTarget(pos[0])
			if err != nil {
				return err
			}
			bySubject, err := grantsBySubject(ctx, c, target)
			if err != nil {
				return err
			}
			for _, s := range slices.Sorted(maps.Keys(bySubject)) {
				fmt.Fprintf(stdout, "%s\t%s\n", printable(s), strings.Join(bySubject[s], ","))
			}
			return nil
		}},
	}
}

// grantsBySubject returns the grants on target by subject ("USER:jane" →
// its accesses), those held by a grant of the subject's own: not through a
// group, role or tag.
func grantsBySubject(ctx context.Context, c *apiClient, target subjectRef) (map[string][]string, error) {
	var bySubject map[string][]string
	err := c.getJSON(ctx, "/api/auth/authorization/"+url.PathEscape(target.Type)+"/"+url.PathEscape(target.ID)+"?groupBy=subject", &bySubject)
	return bySubject, err
}
