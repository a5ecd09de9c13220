package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"

	"github.com/flowvault/flowvault/schemas/conductor"
)

const webhookUsage = `usage: flowvault webhook <command> [flags]

commands:
  create FILE                     create a webhook from its configuration in FILE ("-": stdin)
                                  and print it, with its id: deliveries go to POST /webhook/{id}.
                                  Its verifier's secrets are references, "${workflow.secrets.NAME}"
                                  (store the value with "flowvault secret put NAME")
  update ID FILE                  replace webhook ID's configuration
  list                            list the webhooks: id, name, verifier
  get ID                          print a webhook's configuration
  delete ID                       delete a webhook (its deliveries are refused from then on)

flags of every command:
` + clientUsage

func runWebhook(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runClientCommands(ctx, "webhook", webhookUsage, webhookCommands, args, stdout, stderr)
}

func webhookCommands(*flag.FlagSet) map[string]clientCommand {
	path := func(id string) string { return "/api/metadata/webhook/" + url.PathEscape(id) }
	save := func(ctx context.Context, c *apiClient, method, p, file string, stdout io.Writer) error {
		b, err := readJSONFile(file)
		if err != nil {
			return fmt.Errorf("read the configuration: %w", err)
		}
		if err := checkJSON(b, file); err != nil {
			return err
		}
		answer, err := c.do(ctx, method, p, "application/json", b)
		if err != nil {
			return err
		}
		return printIndented(stdout, answer, "the webhook")
	}
	return map[string]clientCommand{
		"create": {args: 1, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			return save(ctx, c, "POST", "/api/metadata/webhook", pos[0], stdout)
		}},
		"update": {args: 2, run: func(ctx context.Context, c *apiClient, pos []string, stdout io.Writer) error {
			if err := checkID(pos[0]); err != nil {
				return err // the file's name may hold a slash; the id may not
			}
			return save(ctx, c, "PUT", path(pos[0]), pos[1], stdout)
		}},
		"list":   listCommand("/api/metadata/webhook", func(w conductor.WebhookConfig) string { return row(w.ID, w.Name, w.Verifier) }),
		"get":    getCommand(path),
		"delete": deleteCommand(path),
	}
}
