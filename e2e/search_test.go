package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

const (
	packFlow   = `{"name":"pack_flow","version":1,"tasks":[{"name":"pack","taskReferenceName":"pack_ref","inputParameters":{"sku":"${workflow.input.sku}","n":"${workflow.input.n}"}}],"outputParameters":{"box":"${pack_ref.output.box}"}}`
	refundFlow = `{"name":"refund_flow","version":1,"tasks":[{"name":"mark","taskReferenceName":"mark","type":"SET_VARIABLE","inputParameters":{"m":1}},{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`
)

// searchFixture starts 4 pack_flow workflows (even n complete, odd n fail)
// and then 3 refund_flow workflows (left waiting). mid is a time between
// the two batches.
type searchFixture struct {
	packs, refunds []string
	mid            int64
}

func newSearchFixture(t *testing.T, e *env) searchFixture {
	t.Helper()
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"pack","retryCount":0}]`)
	e.register(packFlow, refundFlow)
	e.work("pack", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		n, _ := task.InputData["n"].(float64)
		if int(n)%2 == 1 {
			return workers.Output{}, errors.New("out of boxes")
		}
		return workers.Output{Data: map[string]any{"box": fmt.Sprint("BOX-", n)}}, nil
	})
	var f searchFixture
	for i := 1; i <= 4; i++ {
		id := e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "pack_flow",
			CorrelationID: fmt.Sprint("ord-", i), Input: map[string]any{"sku": fmt.Sprint("SKU-", i), "n": i, "label": fmt.Sprint("<box ", i, " & co>")}, Priority: i})
		f.packs = append(f.packs, id)
		time.Sleep(3 * time.Millisecond) // distinct start times
	}
	for i, id := range f.packs {
		want := conductor.WorkflowCompleted
		if i%2 == 0 {
			want = conductor.WorkflowFailed
		}
		e.waitStatus(id, want)
	}
	time.Sleep(5 * time.Millisecond)
	f.mid = time.Now().UnixMilli()
	time.Sleep(5 * time.Millisecond)
	for i := 1; i <= 3; i++ {
		id := e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "refund_flow", CorrelationID: fmt.Sprint("ref-", i)})
		f.refunds = append(f.refunds, id)
		time.Sleep(3 * time.Millisecond)
	}
	return f
}

func (e *env) search(path string) conductor.SearchResult[conductor.WorkflowSummary] {
	e.t.Helper()
	var res conductor.SearchResult[conductor.WorkflowSummary]
	e.decode(http.StatusOK, "GET", path, nil, &res)
	return res
}

func summaryIDs(res conductor.SearchResult[conductor.WorkflowSummary]) []string {
	ids := []string{}
	for _, s := range res.Results {
		ids = append(ids, s.WorkflowID)
	}
	return ids
}

var isoTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestWorkflowSearch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := newSearchFixture(t, e)
	all := append(slices.Clone(f.packs), f.refunds...)

	for _, c := range []struct {
		query, freeText string
		want            []string
	}{
		{"", "", all},
		{"", "*", all},
		{"status IN (RUNNING)", "*", f.refunds},
		{"status IN (RUNNING,FAILED)", "", []string{f.packs[0], f.packs[2], f.refunds[0], f.refunds[1], f.refunds[2]}},
		{"workflowType = pack_flow", "", f.packs},
		{`workflowType = "pack_flow" AND status = COMPLETED`, "", []string{f.packs[1], f.packs[3]}},
		{`correlationId = "ord-3"`, "", []string{f.packs[2]}},
		{"correlationId IN (ord-1, ref-2)", "", []string{f.packs[0], f.refunds[1]}},
		{`workflowId = "` + f.packs[1] + `"`, "", []string{f.packs[1]}},
		{fmt.Sprintf("startTime > %d", f.mid), "", f.refunds},
		{fmt.Sprintf("startTime < %d AND status = FAILED", f.mid), "", []string{f.packs[0], f.packs[2]}},
		{fmt.Sprintf("startTime BETWEEN 0 AND %d", f.mid), "", f.packs},
		{"workflowType = refund_flow OR correlationId = ord-1", "", []string{f.packs[0], f.refunds[0], f.refunds[1], f.refunds[2]}},
		{"priority >= 3", "", []string{f.packs[2], f.packs[3]}},
		{"reasonForIncompletion IS NOT NULL", "", []string{f.packs[0], f.packs[2]}},
		{"executionTime >= 0", "", all},
		{"executionTime = 0 AND status = RUNNING", "", f.refunds}, // 0 until it ends
		{"", "SKU-2", []string{f.packs[1]}},
		{"", "box-4", []string{f.packs[3]}},        // output, any case
		{"", "<box 4 & co>", []string{f.packs[3]}}, // as written, not as HTML-escaped JSON
		{"status = FAILED", "sku", []string{f.packs[0], f.packs[2]}},
		{"workflowType = nothing", "", nil},
		// Bounds at the ends of the range match nothing; they do not wrap.
		{"startTime > 9223372036854775807", "", nil},
		{"startTime < -9223372036854775808", "", nil},
	} {
		res := e.search("/api/workflow/search?start=0&size=100&sort=&skipCache=false&query=" + urlEscape(c.query) + "&freeText=" + urlEscape(c.freeText))
		if got := summaryIDs(res); !sameSet(got, c.want) || res.TotalHits != int64(len(c.want)) {
			t.Errorf("query %q freeText %q: %d hits %v, want %v", c.query, c.freeText, res.TotalHits, got, c.want)
		}
	}

	// Default order: newest first. Sorts by any field, both directions.
	if got := summaryIDs(e.search("/api/workflow/search")); !reflect.DeepEqual(got, reversed(all)) {
		t.Errorf("default order %v, want newest first %v", got, reversed(all))
	}
	if got := summaryIDs(e.search("/api/workflow/search?sort=startTime:ASC")); !reflect.DeepEqual(got, all) {
		t.Errorf("startTime:ASC %v", got)
	}
	byID := slices.Clone(all)
	sort.Sort(sort.Reverse(sort.StringSlice(byID)))
	if got := summaryIDs(e.search("/api/workflow/search?sort=workflowId:DESC")); !reflect.DeepEqual(got, byID) {
		t.Errorf("workflowId:DESC %v, want %v", got, byID)
	}
	// Several keys: "|" separates them as Conductor's server splits its
	// sort parameter; commas too.
	for _, sort := range []string{"status:ASC,startTime:DESC", "status:ASC|startTime:DESC"} {
		got := summaryIDs(e.search("/api/workflow/search?sort=" + urlEscape(sort) + "&query=" + urlEscape("workflowType = pack_flow")))
		if want := []string{f.packs[3], f.packs[1], f.packs[2], f.packs[0]}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s %v, want %v", sort, got, want)
		}
	}

	// A workflow that has not ended sorts after those that have, either
	// way, as a missing endTime sorts in Conductor's index.
	for _, dir := range []string{"ASC", "DESC"} {
		got := summaryIDs(e.search("/api/workflow/search?sort=endTime:" + dir))
		if len(got) != len(all) || !sameSet(got[:4], f.packs) || !reflect.DeepEqual(got[4:], reversed(f.refunds)) {
			t.Errorf("endTime:%s %v: want the ended %v first, then the running newest first %v", dir, got, f.packs, reversed(f.refunds))
		}
	}

	// Ties fall back to the default order, newest first, however the
	// query lists its values.
	for _, q := range []string{"status IN (COMPLETED, FAILED)", "status IN (FAILED, COMPLETED)"} {
		want := summaryIDs(e.search("/api/workflow/search?query=" + urlEscape(q)))
		if got := summaryIDs(e.search("/api/workflow/search?sort=workflowType:ASC&query=" + urlEscape(q))); len(want) != 4 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s sorted by workflowType, all tied: %v, want newest first %v", q, got, want)
		}
	}

	// Paging.
	var paged []string
	for start := 0; start < 10; start += 3 {
		res := e.search(fmt.Sprintf("/api/workflow/search?start=%d&size=3&sort=startTime:ASC", start))
		if res.TotalHits != 7 {
			t.Fatalf("totalHits %d", res.TotalHits)
		}
		paged = append(paged, summaryIDs(res)...)
	}
	if !reflect.DeepEqual(paged, all) {
		t.Errorf("pages %v, want %v", paged, all)
	}
	if res := e.search("/api/workflow/search?start=100"); res.TotalHits != 7 || res.Results == nil || len(res.Results) != 0 {
		t.Errorf("past the end: %+v", res)
	}
	if res := e.search("/api/workflow/search?size=0"); res.TotalHits != 7 || len(res.Results) != 0 {
		t.Errorf("size 0: %+v", res)
	}

	// Summary fields.
	res := e.search("/api/workflow/search?query=" + urlEscape(`correlationId = "ord-1"`))
	s := res.Results[0]
	var in map[string]any
	if err := json.Unmarshal([]byte(s.Input), &in); err != nil || in["sku"] != "SKU-1" || in["n"] != float64(1) {
		t.Errorf("input %q", s.Input)
	}
	if s.WorkflowType != "pack_flow" || s.Version != 1 || s.Status != "FAILED" || s.Priority != 1 || s.CorrelationID != "ord-1" ||
		!isoTime.MatchString(s.StartTime) || !isoTime.MatchString(s.UpdateTime) || !isoTime.MatchString(s.EndTime) ||
		s.FailedReferenceTaskNames != "pack_ref" || !reflect.DeepEqual(s.FailedTaskNames, []string{"pack"}) ||
		s.ReasonForIncompletion != "out of boxes" || s.Output != "{}" && s.Output != `{"box":null}` || s.ExecutionTime < 0 || s.InputSize != int64(len(s.Input)) {
		t.Errorf("summary %+v", s)
	}
	if r := e.search("/api/workflow/search?query=" + urlEscape(`workflowId = `+f.refunds[0])).Results[0]; r.EndTime != "" || r.Status != "RUNNING" {
		t.Errorf("running summary %+v", r)
	}

	// search-v2 answers with whole workflows.
	var v2 conductor.SearchResult[conductor.Workflow]
	e.decode(http.StatusOK, "GET", "/api/workflow/search-v2?query="+urlEscape("status = COMPLETED"), nil, &v2)
	if v2.TotalHits != 2 || len(v2.Results) != 2 || len(v2.Results[0].Tasks) != 1 || v2.Results[0].Output["box"] == nil {
		t.Errorf("search-v2 %+v", v2)
	}

	for _, path := range []string{
		"/api/workflow/search?start=-1",
		"/api/workflow/search?size=-1",
		"/api/workflow/search?size=5001",
		"/api/workflow/search?start=first",
		"/api/workflow/search?query=" + urlEscape("status IN (RUNNING"),
		"/api/workflow/search?query=" + urlEscape("colour = red"),
		"/api/workflow/search?query=" + urlEscape("startTime > tomorrow"),
		"/api/workflow/search?query=" + urlEscape("status = RUNNING AND"),
		"/api/workflow/search?sort=colour:ASC",
		"/api/workflow/search?sort=startTime:UP",
		"/api/workflow/search-v2?size=9999",
	} {
		e.fails(http.StatusBadRequest, "GET", path, nil)
	}
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func TestTaskSearch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := newSearchFixture(t, e)
	search := func(q, freeText, sort string) conductor.SearchResult[conductor.TaskSummary] {
		t.Helper()
		var res conductor.SearchResult[conductor.TaskSummary]
		e.decode(http.StatusOK, "GET", "/api/tasks/search?start=0&size=100&query="+urlEscape(q)+"&freeText="+urlEscape(freeText)+"&sort="+urlEscape(sort), nil, &res)
		return res
	}
	for _, c := range []struct {
		query, freeText string
		want            int
	}{
		{"", "*", 10},
		{"status = COMPLETED", "", 5},
		{"status=COMPLETED AND taskType = pack", "", 2},
		{"status IN (FAILED, IN_PROGRESS)", "", 5},
		{"taskType = WAIT", "", 3},
		{"taskRefName = hold AND status = IN_PROGRESS", "", 3},
		{"taskReferenceName = hold", "", 3}, // TaskSummary's name for it
		{"workflowId = " + f.packs[0], "", 1},
		{`correlationId = "ref-2"`, "", 2},
		{"workflowType = refund_flow AND taskType = SET_VARIABLE", "", 3},
		{fmt.Sprintf("scheduledTime > %d", f.mid), "", 6},
		{fmt.Sprintf("status = COMPLETED AND scheduledTime < %d", f.mid), "", 2},
		{"", "SKU-4", 1},
		{"status = FAILED", "boxes", 0}, // the reason is not free text; input and output are
	} {
		if res := search(c.query, c.freeText, ""); res.TotalHits != int64(c.want) || len(res.Results) != c.want {
			t.Errorf("query %q freeText %q: %d hits (%d results), want %d", c.query, c.freeText, res.TotalHits, len(res.Results), c.want)
		}
	}
	res := search("workflowId = "+f.packs[1], "", "")
	ts := res.Results[0]
	var in map[string]any
	if err := json.Unmarshal([]byte(ts.Input), &in); err != nil || in["sku"] != "SKU-2" {
		t.Errorf("task input %q", ts.Input)
	}
	if ts.TaskType != "pack" || ts.TaskDefName != "pack" || ts.TaskReferenceName != "pack_ref" || ts.WorkflowID != f.packs[1] ||
		ts.WorkflowType != "pack_flow" || ts.CorrelationID != "ord-2" || ts.Status != "COMPLETED" || ts.Output != `{"box":"BOX-2"}` ||
		!isoTime.MatchString(ts.ScheduledTime) || !isoTime.MatchString(ts.EndTime) || ts.TaskID == "" || ts.WorkflowPriority != 2 {
		t.Errorf("task summary %+v", ts)
	}
	// Sorted by workflow, then newest first by default.
	byWF := search("taskType = pack", "", "workflowId:ASC")
	for i := 1; i < len(byWF.Results); i++ {
		if byWF.Results[i-1].WorkflowID > byWF.Results[i].WorkflowID {
			t.Fatalf("not sorted by workflowId: %+v", byWF.Results)
		}
	}
	// Several keys, separated by "|" as in Conductor: the WAIT tasks,
	// still in progress, after the completed SET_VARIABLE tasks, each
	// kind oldest first.
	var keyed []string
	for _, ts := range search("workflowType = refund_flow", "", "status:ASC|scheduledTime:ASC").Results {
		keyed = append(keyed, ts.TaskType+"/"+ts.CorrelationID)
	}
	if want := []string{"SET_VARIABLE/ref-1", "SET_VARIABLE/ref-2", "SET_VARIABLE/ref-3", "WAIT/ref-1", "WAIT/ref-2", "WAIT/ref-3"}; !reflect.DeepEqual(keyed, want) {
		t.Errorf("status:ASC|scheduledTime:ASC %v, want %v", keyed, want)
	}
	// Ties fall back to the default order, newest scheduled first,
	// however the query lists its values.
	for _, q := range []string{"taskType = pack AND status IN (COMPLETED, FAILED)", "taskType = pack AND status IN (FAILED, COMPLETED)"} {
		var want, got []string
		for _, ts := range search(q, "", "").Results {
			want = append(want, ts.TaskID)
		}
		for _, ts := range search(q, "", "workflowType:ASC").Results {
			got = append(got, ts.TaskID)
		}
		if len(want) != 4 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s sorted by workflowType, all tied: %v, want newest first %v", q, got, want)
		}
	}
	newest := search("", "", "")
	for i := 1; i < len(newest.Results); i++ {
		if newest.Results[i-1].ScheduledTime < newest.Results[i].ScheduledTime {
			t.Fatalf("not newest first at %d", i)
		}
	}
	var page conductor.SearchResult[conductor.TaskSummary]
	e.decode(http.StatusOK, "GET", "/api/tasks/search?start=8&size=5", nil, &page)
	if page.TotalHits != 10 || len(page.Results) != 2 {
		t.Errorf("last page %d of %d", len(page.Results), page.TotalHits)
	}
	var full conductor.SearchResult[conductor.Task]
	e.decode(http.StatusOK, "GET", "/api/tasks/search-v2?query="+urlEscape("taskType = WAIT"), nil, &full)
	if full.TotalHits != 3 || full.Results[0].Status != "IN_PROGRESS" || full.Results[0].WorkflowType != "refund_flow" {
		t.Errorf("tasks search-v2 %+v", full)
	}
	for _, path := range []string{
		"/api/tasks/search?start=-5",
		"/api/tasks/search?size=100000",
		"/api/tasks/search?query=" + urlEscape("status = "),
		"/api/tasks/search?query=" + urlEscape("flavour = sweet"),
		"/api/tasks/search?sort=flavour",
	} {
		e.fails(http.StatusBadRequest, "GET", path, nil)
	}
}

// A task's unset times are the epoch, as Conductor's TaskSummary formats
// them and its task index holds them: a task not yet taken started in
// 1970 for startTime < t and startTime:ASC, and ends in 1970 for
// endTime < t; IS NULL finds no task; and its summary shows
// 1970-01-01T00:00:00.000Z for them, where it left them out.
func TestTaskSearchUnsetTimesAreTheEpoch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"idle"}]`)
	e.register(`{"name":"idle_flow","version":1,"tasks":[
	 {"name":"mark","taskReferenceName":"mark","type":"SET_VARIABLE","inputParameters":{"m":1}},
	 {"name":"idle","taskReferenceName":"idle"}]}`)
	id := e.start("idle_flow", nil)
	// search returns the summaries of the workflow's tasks that q (ANDed
	// to its id) finds, in sort's order, by reference name.
	search := func(q, sort string) (refs []string, byRef map[string]conductor.TaskSummary) {
		t.Helper()
		var res conductor.SearchResult[conductor.TaskSummary]
		e.decode(http.StatusOK, "GET", "/api/tasks/search?size=10&query="+urlEscape("workflowId = "+id+q)+"&sort="+urlEscape(sort), nil, &res)
		byRef = map[string]conductor.TaskSummary{}
		for _, ts := range res.Results {
			refs = append(refs, ts.TaskReferenceName)
			byRef[ts.TaskReferenceName] = ts
		}
		if int(res.TotalHits) != len(refs) {
			t.Fatalf("%q: %d hits, %d results", q, res.TotalHits, len(refs))
		}
		return refs, byRef
	}
	var tasks map[string]conductor.TaskSummary
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if _, tasks = search("", ""); len(tasks) != 2 || tasks["mark"].Status != conductor.TaskCompleted || tasks["idle"].Status != conductor.TaskScheduled {
			return fmt.Errorf("tasks %+v, want mark COMPLETED and idle SCHEDULED", tasks)
		}
		return nil
	})
	const epoch = "1970-01-01T00:00:00.000Z"
	if idle := tasks["idle"]; idle.StartTime != epoch || idle.EndTime != epoch || !isoTime.MatchString(idle.ScheduledTime) || idle.ScheduledTime == epoch {
		t.Errorf("idle task's summary: scheduled %q, started %q, ended %q; want started and ended %s", idle.ScheduledTime, idle.StartTime, idle.EndTime, epoch)
	}
	if mark := tasks["mark"]; !isoTime.MatchString(mark.StartTime) || mark.StartTime == epoch || !isoTime.MatchString(mark.EndTime) || mark.EndTime == epoch {
		t.Errorf("mark task's summary: started %q, ended %q", mark.StartTime, mark.EndTime)
	}
	now := time.Now().UnixMilli()
	for _, tc := range []struct {
		query, sort string
		want        []string // in order when sorted
	}{
		{fmt.Sprintf(" AND startTime < %d", now), "", []string{"idle", "mark"}},
		{" AND startTime < 1000", "", []string{"idle"}},
		{" AND endTime <= 0", "", []string{"idle"}},
		{fmt.Sprintf(" AND endTime BETWEEN 1000 AND %d", now), "", []string{"mark"}},
		{" AND startTime IS NULL", "", nil},
		{" AND endTime IS NOT NULL", "", []string{"idle", "mark"}},
		{"", "startTime:ASC", []string{"idle", "mark"}},
		{"", "startTime:DESC", []string{"mark", "idle"}},
		{"", "endTime:ASC", []string{"idle", "mark"}},
	} {
		got, _ := search(tc.query, tc.sort)
		if tc.sort == "" {
			slices.Sort(got) // ties in scheduled time: any order
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("query %q sort %q found %v, want %v", tc.query, tc.sort, got, tc.want)
		}
	}
}

// The executions read model, search indexes included, rebuilds from the
// log to identical contents: removed, archived, restarted, skipped and
// updated workflows alike.
func TestExecutionsRebuild(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	ctx := context.Background()
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	f := newSearchFixture(t, e)
	e.register(threeGated)
	// Archived, hard-removed (running), terminate-removed, restarted,
	// rerun, skipped, variables, an idempotency key.
	archivedTask := e.workflow(f.packs[0]).Tasks[0].TaskID
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+f.packs[0]+"/remove", nil)
	// An archived workflow's tasks stay searchable, by id too.
	if got := e.must(http.StatusOK, "GET", "/api/tasks/search?query="+url.QueryEscape(`taskId = "`+archivedTask+`"`), nil); !strings.Contains(got, `"totalHits":1`) {
		t.Fatalf("task search by the id of an archived workflow's task: %s", got)
	}
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+f.refunds[0]+"/remove?archiveWorkflow=false", nil)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+f.refunds[1]+"/terminate-remove", nil)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+f.packs[2]+"/restart", nil)
	e.waitStatus(f.packs[2], conductor.WorkflowFailed)
	e.must(http.StatusOK, "POST", "/api/workflow/"+f.packs[1]+"/rerun", map[string]any{"workflowInput": map[string]any{"sku": "SKU-X", "n": 6}, "correlationId": "rerun-c"})
	e.waitStatus(f.packs[1], conductor.WorkflowCompleted)
	gated := e.start("three_gated", nil)
	e.must(http.StatusNoContent, "PUT", "/api/workflow/"+gated+"/skiptask/mid", map[string]any{"taskOutput": map[string]any{"o": 1}})
	e.must(http.StatusOK, "POST", "/api/workflow/"+f.refunds[2]+"/variables", map[string]any{"v": 1})
	idem := e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "refund_flow", IdempotencyKey: "k-1"})
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+idem+"/remove?archiveWorkflow=false", nil)
	before := e.search("/api/workflow/search?sort=workflowId:ASC")

	restart := func() *env {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := n.Stop(sctx); err != nil {
			t.Fatal(err)
		}
		n, base = nodetest.StartConfig(t, cfg) // catches up with the log before it answers
		return &env{t: t, node: n, base: base}
	}
	restart()
	stop := func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := n.Stop(sctx); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	want := nodetest.Dump(t, cfg)
	if err := os.RemoveAll(cfg.PebbleDir()); err != nil {
		t.Fatal(err)
	}
	e2 := restart()
	if after := e2.search("/api/workflow/search?sort=workflowId:ASC"); !reflect.DeepEqual(summaryIDs(after), summaryIDs(before)) || after.TotalHits != before.TotalHits {
		t.Fatalf("search after rebuild %v, before %v", summaryIDs(after), summaryIDs(before))
	}
	e2.fails(http.StatusNotFound, "GET", "/api/workflow/"+f.refunds[0], nil)
	if wf := e2.workflow(f.packs[0]); wf.Status != conductor.WorkflowFailed {
		t.Fatalf("archived workflow after rebuild: %s", wf.Status)
	}
	stop()
	if got := nodetest.Dump(t, cfg); got != want {
		t.Fatalf("rebuilt read models differ:\n%s", firstDiff(want, got))
	}
}

func firstDiff(a, b string) string {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			lo := max(0, i-200)
			return fmt.Sprintf("before: …%s…\nafter:  …%s…", a[lo:min(len(a), i+200)], b[lo:min(len(b), i+200)])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}
