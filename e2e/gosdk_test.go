package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/antihax/optional"
	"github.com/conductor-sdk/conductor-go/sdk/client"
	"github.com/conductor-sdk/conductor-go/sdk/model"
	"github.com/conductor-sdk/conductor-go/sdk/settings"
	"github.com/conductor-sdk/conductor-go/sdk/worker"
	"github.com/conductor-sdk/conductor-go/sdk/workflow/executor"
	"github.com/sirupsen/logrus"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// The published Go SDK (github.com/conductor-sdk/conductor-go v1.5.4),
// unchanged, against a secure node with the bootstrap access key: its
// secrets client stores and tags a secret; its metadata client registers
// a workflow with tags and reads them back (?metadata=true); its webhooks
// client makes a webhook and tags it; its task
// runner works a task whose input references the secret, writes a log
// line with its task client and returns a _secrets output; its executor
// runs the workflow synchronously. The worker gets the value; every read
// shows the reference or ***; the value is in no log line.
func TestGoSDK(t *testing.T) {
	t.Parallel()
	logrus.SetLevel(logrus.WarnLevel)
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	logger, logs := testutil.CapturingLogger()
	_, base := nodetest.StartLogger(t, cfg, logger)
	keyID, secret := nodetest.BootstrapKey(t, cfg)
	api := client.NewAPIClient(settings.NewAuthenticationSettings(keyID, secret), settings.NewHttpSettings(base+"/api"))
	ctx := testutil.Context(t, 90*time.Second)
	value := randomValue(t)

	secrets := client.NewSecretsClient(api)
	if _, _, err := secrets.PutSecret(ctx, value, "gosdk_token"); err != nil {
		t.Fatalf("PutSecret: %v", err)
	}
	if got, _, err := secrets.GetSecret(ctx, "gosdk_token"); err != nil || got != value {
		t.Fatalf("GetSecret = %q, %v; want the value put", got, err)
	}
	if _, err := secrets.PutTagForSecret(ctx, []model.Tag{{Key: "team", Value: "pay"}}, "gosdk_token"); err != nil {
		t.Fatalf("PutTagForSecret: %v", err)
	}
	if tags, _, err := secrets.GetTags(ctx, "gosdk_token"); err != nil || len(tags) != 1 || tags[0].Key != "team" || tags[0].Value != "pay" {
		t.Fatalf("GetTags = %+v, %v", tags, err)
	}

	metadata := client.NewMetadataClient(api)
	if _, err := metadata.RegisterTaskDef(ctx, []model.TaskDef{{Name: "gosdk_task", TimeoutSeconds: 60, ResponseTimeoutSeconds: 30,
		OwnerEmail: "dev@example.com"}}); err != nil {
		t.Fatalf("RegisterTaskDef: %v", err)
	}
	def := model.WorkflowDef{Name: "gosdk_flow", Version: 1, OwnerEmail: "dev@example.com",
		Tasks: []model.WorkflowTask{{Name: "gosdk_task", TaskReferenceName: "t", Type_: "SIMPLE",
			InputParameters: map[string]interface{}{"token": "${workflow.secrets.gosdk_token}", "x": "${workflow.input.x}"}}},
		OutputParameters: map[string]interface{}{"r": "${t.output.r}", "session": "${t.output._secrets.session}"}}
	wantTags := []model.MetadataTag{{Key: "owner", Value: "payments"}}
	if _, err := metadata.RegisterWorkflowDefWithTags(ctx, true, def, wantTags); err != nil {
		t.Fatalf("RegisterWorkflowDefWithTags: %v", err)
	}
	if tags, err := metadata.GetTagsForWorkflowDef(ctx, "gosdk_flow"); err != nil || !reflect.DeepEqual(tags, wantTags) {
		t.Fatalf("GetTagsForWorkflowDef = %+v, %v; want %+v", tags, err, wantTags)
	}

	// The tag calls are the service's, not its client interface's.
	webhooks := &client.WebhooksConfigResourceApiService{APIClient: api}
	hook, _, err := webhooks.CreateWebhook(ctx, model.WebhookConfig{Name: "gosdk_hook", Verifier: "HEADER_BASED",
		Headers: map[string]string{"X-Token": "${workflow.secrets.gosdk_token}"}, WorkflowsToStart: map[string]int32{"gosdk_flow": 1}})
	if err != nil || hook.Id == "" {
		t.Fatalf("CreateWebhook = %+v, %v", hook, err)
	}
	if _, err := webhooks.PutTagForWebhook(ctx, []model.Tag{{Key: "source", Value: "github"}}, hook.Id); err != nil {
		t.Fatalf("PutTagForWebhook: %v", err)
	}
	if tags, _, err := webhooks.GetTagsForWebhook(ctx, hook.Id); err != nil || len(tags) != 1 || tags[0].Key != "source" || tags[0].Value != "github" {
		t.Fatalf("GetTagsForWebhook = %+v, %v", tags, err)
	}

	tasks := client.NewTaskClient(api)
	var mu sync.Mutex
	var given []string
	runner := worker.NewTaskRunnerWithApiClient(api)
	if err := runner.StartWorker("gosdk_task", func(task *model.Task) (interface{}, error) {
		mu.Lock()
		given = append(given, task.InputData["token"].(string))
		mu.Unlock()
		if _, err := tasks.Log(context.Background(), "a line from the go sdk", task.TaskId); err != nil {
			return nil, err
		}
		return map[string]interface{}{"r": "done-" + task.InputData["x"].(string),
			"_secrets": map[string]interface{}{"session": "sess-" + task.TaskId}}, nil
	}, 1, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		runner.Shutdown("gosdk_task")
		runner.WaitWorkers()
	})

	run, err := executor.NewWorkflowExecutor(api).ExecuteWorkflow(&model.StartWorkflowRequest{Name: "gosdk_flow", Version: 1,
		Input: map[string]interface{}{"x": "1"}}, "")
	if err != nil {
		t.Fatalf("ExecuteWorkflow: %v", err)
	}
	if run.Status != "COMPLETED" || run.Output["r"] != "done-1" || run.Output["session"] != "***" {
		t.Fatalf("ExecuteWorkflow = %s with output %v; want COMPLETED, r done-1 and the session masked", run.Status, run.Output)
	}
	mu.Lock()
	if len(given) != 1 || given[0] != value {
		t.Fatalf("the worker was given %d tokens, want the secret's value once", len(given))
	}
	mu.Unlock()

	w, _, err := client.NewWorkflowClient(api).GetExecutionStatus(ctx, run.WorkflowId,
		&client.WorkflowResourceApiGetExecutionStatusOpts{IncludeTasks: optional.NewBool(true)})
	if err != nil || len(w.Tasks) != 1 {
		t.Fatalf("GetExecutionStatus = %d tasks, %v", len(w.Tasks), err)
	}
	task := w.Tasks[0]
	if task.InputData["token"] != "${workflow.secrets.gosdk_token}" || task.OutputData["_secrets"] != "***" {
		t.Fatalf("the task as read: input %v, output %v; want the reference and _secrets masked", task.InputData, task.OutputData)
	}
	lines, _, err := tasks.GetTaskLogs(ctx, task.TaskId)
	if err != nil || len(lines) != 1 || lines[0].Log != "a line from the go sdk" {
		t.Fatalf("GetTaskLogs = %+v, %v; want the worker's line as sent", lines, err)
	}
	if l := logs.String(); strings.Contains(l, value) || strings.Contains(l, secret) {
		t.Fatal("the secret's value or the access key's secret was logged")
	}
}

func randomValue(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "gosdk-" + hex.EncodeToString(b)
}

// conductor-go's TaskClient.Size sends its taskType as the one value it
// is given, so several task types go as "A,B", which Conductor (a Spring
// List<String> parameter) splits at the commas and trims. The value was
// read as one task type named "A,B": {"gosdk_qa,gosdk_qb":0}.
func TestGoSDKQueueSizes(t *testing.T) {
	t.Parallel()
	logrus.SetLevel(logrus.WarnLevel)
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	_, base := nodetest.StartConfig(t, cfg)
	keyID, secret := nodetest.BootstrapKey(t, cfg)
	api := client.NewAPIClient(settings.NewAuthenticationSettings(keyID, secret), settings.NewHttpSettings(base+"/api"))
	ctx := testutil.Context(t, 60*time.Second)

	metadata := client.NewMetadataClient(api)
	def := model.WorkflowDef{Name: "gosdk_sizes", Version: 1, OwnerEmail: "dev@example.com", Tasks: []model.WorkflowTask{
		{Name: "gosdk_qa", TaskReferenceName: "a", Type_: "SIMPLE"},
	}}
	if _, err := metadata.RegisterWorkflowDef(ctx, true, def); err != nil {
		t.Fatalf("RegisterWorkflowDef: %v", err)
	}
	workflows := client.NewWorkflowClient(api)
	for range 2 {
		if _, _, err := workflows.StartWorkflowWithRequest(ctx, model.StartWorkflowRequest{Name: "gosdk_sizes", Version: 1}); err != nil {
			t.Fatalf("StartWorkflowWithRequest: %v", err)
		}
	}
	tasks := client.NewTaskClient(api)
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		sizes, _, err := tasks.Size(ctx, &client.TaskResourceApiSizeOpts{TaskType: optional.NewInterface("gosdk_qa")})
		if err != nil || sizes["gosdk_qa"] != 2 {
			return fmt.Errorf("Size(gosdk_qa) = %v, %v; want 2 queued", sizes, err)
		}
		return nil
	})

	for _, tc := range []struct {
		name     string
		taskType interface{}
		want     map[string]int32
	}{
		{"one type", "gosdk_qa", map[string]int32{"gosdk_qa": 2}},
		{"types separated by commas", "gosdk_qa,gosdk_qb", map[string]int32{"gosdk_qa": 2, "gosdk_qb": 0}},
		{"spaces after the commas", "gosdk_qa, gosdk_qb", map[string]int32{"gosdk_qa": 2, "gosdk_qb": 0}},
		{"a list of one", []string{"gosdk_qa"}, map[string]int32{"gosdk_qa": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sizes, _, err := tasks.Size(ctx, &client.TaskResourceApiSizeOpts{TaskType: optional.NewInterface(tc.taskType)})
			if err != nil || !reflect.DeepEqual(sizes, tc.want) {
				t.Fatalf("Size(%v) = %v, %v; want %v", tc.taskType, sizes, err, tc.want)
			}
		})
	}
}
