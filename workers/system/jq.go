package system

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/itchyny/gojq"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// JQ runs Conductor's JSON_JQ_TRANSFORM task with github.com/itchyny/gojq:
// inputParameters.queryExpression runs over the task input without
// queryExpression itself. The output is {"result": first value,
// "resultList": every value}. A query that does not compile, raises an
// error or exceeds its budget fails the task (FAILED) with the error in
// reasonForIncompletion and in the output's "error".
//
// Queries see no environment ($ENV and env are empty), load no modules
// and read no further inputs.
type JQ struct {
	Budget Budget
}

// Execute runs the query.
func (j JQ) Execute(ctx context.Context, t *conductor.Task) conductor.TaskResult {
	b := j.Budget.withDefaults()
	src, ok := t.InputData["queryExpression"].(string)
	if !ok || strings.TrimSpace(src) == "" {
		return scriptFailed(t, errors.New("inputParameters.queryExpression is required"))
	}
	if err := checkSource(src); err != nil {
		return scriptFailed(t, fmt.Errorf("queryExpression: %v", err))
	}
	q, err := gojq.Parse(src)
	if err != nil {
		return scriptFailed(t, fmt.Errorf("queryExpression: %v", err))
	}
	code, err := gojq.Compile(q)
	if err != nil {
		return scriptFailed(t, fmt.Errorf("queryExpression: %v", err))
	}
	// The query reads the task's whole input, queryExpression included,
	// as Conductor's JsonJqTransform does (`.` shows it).
	input := make(map[string]any, len(t.InputData))
	for k, v := range t.InputData {
		input[k] = toJQ(v)
	}
	release, err := acquireSlot(ctx)
	if err != nil {
		return scriptFailed(t, err)
	}
	defer release()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopWatch := watch(ctx, b, func(reason error) { cancel(reason) })
	results, runErr := collect(runCtx, code, input)
	if reason := stopWatch(); reason != nil {
		return scriptFailed(t, budgetError(b, reason))
	}
	if runErr != nil {
		return scriptFailed(t, withoutPreviews(runErr))
	}
	out := map[string]any{"result": nil, "resultList": results}
	if len(results) > 0 {
		out["result"] = results[0]
	}
	if size, err := json.Marshal(out); err != nil {
		return scriptFailed(t, fmt.Errorf("result: %v", err))
	} else if len(size) > maxOutputBytes {
		return scriptFailed(t, fmt.Errorf("result of %d bytes exceeds the limit of %d", len(size), maxOutputBytes))
	}
	return conductor.TaskResult{Status: conductor.TaskCompleted, OutputData: out}
}

func collect(ctx context.Context, code *gojq.Code, input any) (results []any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("query aborted: %v", p)
		}
	}()
	results = []any{}
	iter := code.RunWithContext(ctx, input)
	for {
		v, ok := iter.Next()
		if !ok {
			return results, nil
		}
		if e, ok := v.(error); ok {
			var halt *gojq.HaltError
			if errors.As(e, &halt) && halt.Value() == nil {
				return results, nil // halt: stop without error
			}
			return nil, e
		}
		results = append(results, fromJQ(v))
	}
}

// toJQ converts a task value to the types gojq works on: int, float64,
// *big.Int, string, bool, nil, []any and map[string]any.
func toJQ(v any) any {
	switch x := v.(type) {
	case int64:
		return int(x)
	case int32:
		return int(x)
	case int16:
		return int(x)
	case int8:
		return int(x)
	case uint64:
		if x > math.MaxInt64 {
			return new(big.Int).SetUint64(x)
		}
		return int(x)
	case uint32:
		return int(x)
	case uint16:
		return int(x)
	case uint8:
		return int(x)
	case uint:
		return toJQ(uint64(x))
	case float32:
		return float64(x)
	case json.Number:
		return toJQ(conductor.Normalize(x))
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = toJQ(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = toJQ(e)
		}
		return s
	}
	return v
}

// fromJQ converts a gojq value back: integers (and integral floats) become
// int64 where they fit, other numbers float64.
func fromJQ(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case *big.Int:
		if x.IsInt64() {
			return x.Int64()
		}
		f, _ := new(big.Float).SetInt(x).Float64()
		return f
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return integral(x)
	case map[string]any:
		for k, e := range x {
			x[k] = fromJQ(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = fromJQ(e)
		}
		return x
	}
	return v
}

// withoutPreviews is err with the values gojq quotes in its type errors
// cut off: `expected an object but got: string ("sk_live_51HxQzT8abcdefgh
// ...")` reads `expected an object but got: string (***)`. Redaction finds
// a secret value whole, in any of its encodings, but not a prefix of it,
// and gojq cuts its previews (an object's or an array's mid-string). A
// value the query raised itself (error(...)) is kept: it is whole.
func withoutPreviews(err error) error {
	var raised gojq.ValueError
	if errors.As(err, &raised) {
		return err
	}
	msg := err.Error()
	if i := strings.Index(msg, " ("); i >= 0 {
		return errors.New(msg[:i] + " (***)")
	}
	return err
}
