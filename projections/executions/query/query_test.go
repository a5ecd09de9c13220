package query_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections/executions/query"
)

var schema = query.Schema{
	"workflowId": query.String, "workflowType": query.String, "status": query.String,
	"correlationId": query.String, "reasonForIncompletion": query.String,
	"startTime": query.Time, "endTime": query.Time, "version": query.Number,
	"scheduledTime": query.EpochTime,
}

// doc is a document for Match.
type doc map[string]any

func (d doc) get(f string) any { return d[f] }

var running = doc{"workflowId": "w-1", "workflowType": "order_flow", "status": "RUNNING", "correlationId": "c 1",
	"startTime": int64(1732939000500), "version": int64(2)}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want bool
	}{
		{"", true},
		{"   ", true},
		{"status = RUNNING", true},
		{"status=RUNNING", true},
		{"status == 'RUNNING'", true},
		{`status = "COMPLETED"`, false},
		{"status != COMPLETED", true},
		{"status <> RUNNING", false},
		{"status IN (RUNNING,FAILED)", true},
		{"status in ( FAILED , 'COMPLETED' )", false},
		{strings.Repeat("(", 32) + "status = RUNNING" + strings.Repeat(")", 32), true},
		{strings.Repeat("status = FAILED OR ", 255) + "status = RUNNING", true},
		{"status NOT IN (FAILED)", true},
		// Long lists, matched as sets: the same answers.
		{"status IN (" + strings.Repeat("FAILED,", 40) + "RUNNING)", true},
		{"status IN (" + strings.Repeat("FAILED,", 40) + "COMPLETED)", false},
		{"status NOT IN (" + strings.Repeat("FAILED,", 40) + "RUNNING)", false},
		{"status NOT IN (" + strings.Repeat("FAILED,", 40) + "'')", true},
		{"version IN (" + strings.Repeat("7,", 40) + "2)", true},
		{"version IN (" + strings.Repeat("7,", 40) + "3)", false},
		{"startTime IN (" + strings.Repeat("1,", 40) + "1732939000500)", true},
		// A value the document lacks (nil) matches only IS NULL, != and
		// NOT IN, as a field missing from Conductor's index.
		{"reasonForIncompletion IN (" + strings.Repeat("x,", 40) + "'')", false},
		{"reasonForIncompletion NOT IN (" + strings.Repeat("x,", 40) + "'')", true},
		{"reasonForIncompletion = ''", false},
		{"reasonForIncompletion != x", true},
		{"reasonForIncompletion < z", false},
		{"reasonForIncompletion STARTS_WITH ''", false},
		{"endTime <= 1732939000500", false},
		{"endTime BETWEEN 0 AND 1732939000500", false},
		{"endTime IS NULL", true},
		{"workflowType = order_flow AND status IN (RUNNING)", true},
		{"workflowType = order_flow and status = FAILED", false},
		{"workflowType = x OR status = RUNNING", true},
		{"(workflowType = x OR status = FAILED) AND version = 2", false},
		{"workflowType = x OR status = FAILED AND version = 2", false},
		{"workflowType = order_flow OR status = FAILED AND version = 3", true}, // AND binds tighter
		{`correlationId = "c 1"`, true},
		{`correlationId = "c \"1"`, false},
		{"startTime > 1732939000000", true},
		{"startTime >= 1732939000500", true},
		{"startTime < 1732939000500", false},
		{"startTime <= 1732939000500", true},
		{"startTime BETWEEN 1732939000000 AND 1732939001000", true},
		{"startTime BETWEEN 1732939001000 AND 1732939002000", false},
		{"startTime > 2024-11-30T03:56:40Z", true}, // 1732939000000
		{"startTime > 2024-12-01", false},
		{"version > 1", true},
		{"version < 10 AND version >= 2", true},
		{"reasonForIncompletion IS NULL", true},
		{"reasonForIncompletion IS NOT NULL", false},
		{"workflowType STARTS_WITH order_", true},
		{"workflowType STARTS_WITH 'flow'", false},
		{"WORKFLOWTYPE = order_flow", true}, // field names ignore case
		{"workflowId = w-1", true},
	} {
		t.Run(tc.q, func(t *testing.T) {
			q, err := query.Parse(tc.q, schema)
			if err != nil {
				t.Fatal(err)
			}
			if got := q.Match(running.get); got != tc.want {
				t.Fatalf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

// A value is null when the document lacks it: nil, "" text or a zero
// time, as Conductor's summaries leave those out of their index
// documents; a number's 0 is a value, as they always hold their numbers
// (version IS NULL matched a document of version 0). Null matches IS
// NULL, != and NOT IN only, and sorts last.
func TestNullIsAValueTheDocumentLacks(t *testing.T) {
	for _, tc := range []struct {
		field        string
		value        any
		zero, other  string // literals: the field's zero value, and one the value is not
		null, isZero bool
	}{
		{"correlationId", "c-1", "''", "x", false, false},
		{"correlationId", nil, "''", "x", true, false},
		{"correlationId", "", "''", "x", true, true},
		{"endTime", int64(5), "0", "7", false, false},
		{"endTime", nil, "0", "7", true, false},
		{"endTime", int64(0), "0", "7", true, true},
		{"version", int64(2), "0", "7", false, false},
		{"version", nil, "0", "7", true, false},
		{"version", int64(0), "0", "7", false, true},
		{"scheduledTime", int64(5), "0", "7", false, false},
		{"scheduledTime", nil, "0", "7", true, false},
		{"scheduledTime", int64(0), "0", "7", false, true}, // the epoch
	} {
		t.Run(fmt.Sprintf("%s=%#v", tc.field, tc.value), func(t *testing.T) {
			d := doc{tc.field: tc.value}
			for q, want := range map[string]bool{
				tc.field + " IS NULL":                   tc.null,
				tc.field + " IS NOT NULL":               !tc.null,
				tc.field + " = " + tc.zero:              !tc.null && tc.isZero,
				tc.field + " >= " + tc.zero:             !tc.null,
				tc.field + " IN (" + tc.other + ")":     false,
				tc.field + " != " + tc.other:            true,
				tc.field + " NOT IN (" + tc.other + ")": true,
			} {
				parsed, err := query.Parse(q, schema)
				if err != nil {
					t.Fatal(err)
				}
				if got := parsed.Match(d.get); got != want {
					t.Errorf("%q = %v, want %v", q, got, want)
				}
			}
			keys, _ := query.ParseSort([]string{tc.field}, schema)
			set := doc{"correlationId": "zzz", "endTime": int64(9), "version": int64(9), "scheduledTime": int64(9)}
			if last := query.Less(keys, set.get, d.get); last != tc.null {
				t.Errorf("sorted after %v: %v, want %v", set[tc.field], last, tc.null)
			}
		})
	}
}

// An EpochTime's 0 is the epoch, as Conductor's task index holds a time
// a task has not set (TaskSummary formats it as 1970-01-01T00:00:00.000Z):
// it compares below every later time and is not null (and sorts first
// when ascending, see TestSortMissingLast); a Time's 0 is null (a
// workflow's end time, which WorkflowSummary leaves out).
func TestEpochTimeZeroIsTheEpoch(t *testing.T) {
	epoch := query.Schema{"startTime": query.EpochTime}
	unset, set := doc{"startTime": int64(0)}, doc{"startTime": int64(1732939000500)}
	for _, tc := range []struct {
		q                       string
		unset, set, unsetAsTime bool // matches unset and set as an EpochTime, unset as a Time
	}{
		{"startTime < 1732939000000", true, false, false},
		{"startTime <= 1732939000500", true, true, false},
		{"startTime < 1970-01-01T00:00:00.001Z", true, false, false},
		{"startTime = 0", true, false, false},
		{"startTime >= 0", true, true, false},
		{"startTime > 0", false, true, false},
		{"startTime BETWEEN 0 AND 1732939000000", true, false, false},
		{"startTime IN (0, 7)", true, false, false},
		{"startTime NOT IN (0, 7)", false, true, true},
		{"startTime != 0", false, true, true},
		{"startTime != 7", true, true, true},
		{"startTime IS NULL", false, false, true},
		{"startTime IS NOT NULL", true, true, false},
	} {
		t.Run(tc.q, func(t *testing.T) {
			q, err := query.Parse(tc.q, epoch)
			if err != nil {
				t.Fatal(err)
			}
			asTime, err := query.Parse(tc.q, query.Schema{"startTime": query.Time})
			if err != nil {
				t.Fatal(err)
			}
			if u, s, ut := q.Match(unset.get), q.Match(set.get), asTime.Match(unset.get); u != tc.unset || s != tc.set || ut != tc.unsetAsTime {
				t.Errorf("unset %v, set %v, unset as a Time %v; want %v, %v, %v", u, s, ut, tc.unset, tc.set, tc.unsetAsTime)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, q := range []string{
		"status",
		"status =",
		"status = RUNNING AND",
		"status IN RUNNING",
		"status IN (RUNNING",
		"status IN (RUNNING,)",
		"(status = RUNNING",
		"status = RUNNING)",
		"nope = 1",
		"version = abc",
		"startTime > yesterday",
		"startTime BETWEEN 1 2",
		"status ! RUNNING",
		`status = "RUNNING`,
		"status IS RUNNING",
		"status NOT RUNNING",
		"version STARTS_WITH 1",
		"status = RUNNING status = FAILED",
		"= RUNNING",
		strings.Repeat("(", 33) + "status = RUNNING" + strings.Repeat(")", 33),
		strings.Repeat("(", 1<<20),
		strings.Repeat("status = RUNNING OR ", 256) + "status = FAILED",
		"status IN (" + strings.Repeat("RUNNING,", 9000) + "FAILED)",
	} {
		t.Run(q[:min(len(q), 40)], func(t *testing.T) {
			_, err := query.Parse(q, schema)
			if !errors.Is(err, fault.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// A refusal says what is wrong with the query.
func TestParseErrorSays(t *testing.T) {
	for _, tc := range []struct{ q, says string }{
		{"NOT status = RUNNING", "NOT does not negate a comparison: use !=, NOT IN (...) or IS NULL"},
		{"status = FAILED AND not (version = 2)", "NOT does not negate a comparison"},
		{"colour = red", `unknown field "colour"`},
		{"status = RUNNING)", `unexpected ")"`},
	} {
		if _, err := query.Parse(tc.q, schema); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: err = %v, want it to say %q", tc.q, err, tc.says)
		}
	}
}

// A refusal quotes at most 200 bytes of what it refuses, wherever the
// query or sort is found wrong: the lexer's refusals quoted all of a
// query's 64 KiB, and a sort's all of the parameter.
func TestErrorsQuoteAnExcerpt(t *testing.T) {
	long := strings.Repeat("status = RUNNING AND ", 3000)
	for _, q := range []string{long + `status = "RUNNING`, long + "status ! RUNNING", long + "status"} {
		_, err := query.Parse(q, schema)
		if !errors.Is(err, fault.ErrInvalid) || len(err.Error()) > 400 {
			t.Errorf("query of %d bytes ending %q: err of %d bytes, want ErrInvalid of at most 400", len(q), q[len(q)-12:], len(err.Error()))
		}
	}
	for _, sort := range []string{strings.Repeat("x", 100_000), "status:" + strings.Repeat("x", 100_000)} {
		_, err := query.ParseSort([]string{sort}, schema)
		if !errors.Is(err, fault.ErrInvalid) || len(err.Error()) > 800 {
			t.Errorf("sort of %d bytes: err of %d bytes, want ErrInvalid of at most 800", len(sort), len(err.Error()))
		}
	}
}

func TestConjuncts(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want []query.Cond
	}{
		{"", nil},
		{"status = RUNNING", []query.Cond{{Field: "status", Op: query.Eq, Values: []any{"RUNNING"}}}},
		{"status IN (RUNNING, PAUSED) AND startTime > 5 AND (version = 1 OR version = 2)", []query.Cond{
			{Field: "status", Op: query.In, Values: []any{"RUNNING", "PAUSED"}},
			{Field: "startTime", Kind: query.Time, Op: query.Gt, Values: []any{int64(5)}},
		}},
		{"status = RUNNING OR version = 1", nil},
	} {
		q, err := query.Parse(tc.q, schema)
		if err != nil {
			t.Fatal(err)
		}
		if got := q.Conjuncts(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: Conjuncts = %+v, want %+v", tc.q, got, tc.want)
		}
	}
}

func TestSort(t *testing.T) {
	keys, err := query.ParseSort([]string{"status:DESC,startTime", "version:asc"}, schema)
	if err != nil {
		t.Fatal(err)
	}
	want := []query.SortKey{{Field: "status", Desc: true}, {Field: "startTime", Kind: query.Time}, {Field: "version", Kind: query.Number}}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys = %+v", keys)
	}
	a := doc{"status": "RUNNING", "startTime": int64(2)}
	b := doc{"status": "RUNNING", "startTime": int64(1)}
	c := doc{"status": "COMPLETED", "startTime": int64(0)}
	if !query.Less(keys, b.get, a.get) || query.Less(keys, a.get, b.get) || !query.Less(keys, a.get, c.get) {
		t.Fatal("wrong order")
	}
	for _, bad := range []string{"nope", "status:UP"} {
		if _, err := query.ParseSort([]string{bad}, schema); !errors.Is(err, fault.ErrInvalid) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
	if keys, err := query.ParseSort([]string{"", " , "}, schema); err != nil || len(keys) != 0 {
		t.Fatalf("empty sort: %v %v", keys, err)
	}
}

// Several keys in one parameter are separated by "|", as Conductor's
// server splits its sort parameter (a Conductor client's
// "status:ASC|startTime:DESC"), or by commas, as Spring joins a repeated
// parameter; either way, or both, they read the same keys.
func TestSortSeparators(t *testing.T) {
	want := []query.SortKey{{Field: "status"}, {Field: "startTime", Kind: query.Time, Desc: true}, {Field: "version", Kind: query.Number}}
	for _, params := range [][]string{
		{"status:ASC|startTime:DESC|version"},
		{"status:ASC,startTime:DESC,version"},
		{"status:ASC | startTime:DESC,version:ASC|"},
		{"status|startTime:DESC", "version"},
	} {
		keys, err := query.ParseSort(params, schema)
		if err != nil || !reflect.DeepEqual(keys, want) {
			t.Errorf("%q: keys %+v, err %v; want %+v", params, keys, err, want)
		}
	}
	if _, err := query.ParseSort([]string{"status:ASC|colour:DESC"}, schema); !errors.Is(err, fault.ErrInvalid) || !strings.Contains(err.Error(), `unknown field "colour"`) {
		t.Errorf("an unknown field after |: err = %v", err)
	}
}

// A value a document lacks sorts after every value whichever the
// direction, as a field missing from Conductor's index does; a number's 0
// is a value, and so is an EpochTime's, the epoch.
func TestSortMissingLast(t *testing.T) {
	ended := doc{"workflowId": "w-1", "correlationId": "c-1", "startTime": int64(5), "version": int64(1), "scheduledTime": int64(5)}
	running := doc{"workflowId": "w-2", "startTime": int64(0), "correlationId": "", "version": int64(0), "scheduledTime": int64(0)}
	for _, tc := range []struct {
		sort       string
		endedFirst bool
	}{
		{"startTime:ASC", true},
		{"startTime:DESC", true},
		{"correlationId:ASC", true},
		{"correlationId:DESC", true},
		{"version:ASC", false},
		{"version:DESC", true},
		{"scheduledTime:ASC", false},
		{"scheduledTime:DESC", true},
	} {
		keys, err := query.ParseSort([]string{tc.sort}, schema)
		if err != nil {
			t.Fatal(err)
		}
		if got := query.Less(keys, ended.get, running.get); got != tc.endedFirst || query.Less(keys, running.get, ended.get) == tc.endedFirst {
			t.Errorf("%s: ended first %v, want %v", tc.sort, got, tc.endedFirst)
		}
	}
	keys, _ := query.ParseSort([]string{"correlationId"}, schema)
	if c := query.Compare(keys, running.get, doc{}.get); c != 0 {
		t.Errorf("two documents without the field compare %d, want a tie", c)
	}
}

func TestFreeText(t *testing.T) {
	for _, tc := range []struct {
		text string
		all  bool
		want bool
	}{
		{"", true, true}, {"*", true, true}, {"order", false, true}, {"*ORDER*", false, true},
		{`"flow"`, false, true}, {"absent", false, false},
	} {
		f := query.ParseFreeText(tc.text)
		if f.All() != tc.all || f.Match("w-1", "Order_Flow") != tc.want {
			t.Errorf("%q: all %v match %v", tc.text, f.All(), f.Match("w-1", "Order_Flow"))
		}
	}
}

// Whatever a query says, parsing it and matching it against a document
// returns; a query that parses also sorts its conjuncts without failing.
func FuzzParse(f *testing.F) {
	for _, q := range []string{"", "status = RUNNING", "status IN (RUNNING,FAILED) AND (version > 1 OR startTime < 5)",
		`correlationId = "c 1"`, "reasonForIncompletion STARTS_WITH 'x'", "startTime BETWEEN 1 AND 2", "((status != 'A'))"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		parsed, err := query.Parse(q, schema)
		if err != nil {
			return
		}
		parsed.Match(running.get)
		parsed.Conjuncts()
	})
}
