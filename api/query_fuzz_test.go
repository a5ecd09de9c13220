package api

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzQueryParams reads any query string as the REST API's query readers
// do. A list names what it was given, each item trimmed, split at commas
// when given once; an integer read writes back as one that reads the
// same; execute's parameters wait no longer than the most it allows.
func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{"taskType=A&taskType=B", "taskType=A,%20B,,", "taskType=", "x=1", "start=1e2&size=2.0", "start=1e999",
		"start=-0&size=9223372036854775808", "waitForSeconds=1e9&waitUntilTaskRef=a,,b&consistency=durable&returnStrategy=x",
		"waitForSeconds=-1", "start=0x10", "start=1_000", "%zz", "a=%00", "start=1e-2", "start=100e-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		for key, vs := range q {
			list := listParam(q, key)
			if len(vs) != 1 {
				if len(list) != len(vs) {
					t.Fatalf("%q: %q read as %q", raw, vs, list)
				}
			} else if strings.Join(list, ",") != strings.Join(trimmed(strings.Split(vs[0], ",")), ",") {
				t.Fatalf("%q: %q read as %q", raw, vs[0], list)
			}
			for _, v := range vs {
				if n, err := int64Param(v, 7); err == nil && v != "" {
					if again, err := int64Param(strconv.FormatInt(n, 10), 7); err != nil || again != n {
						t.Fatalf("%q: %d reads back as %d, %v", v, n, again, err)
					}
				}
				if n, err := atoi(v); err == nil {
					if again, err := atoi(strconv.Itoa(n)); err != nil || again != n {
						t.Fatalf("%q: %d reads back as %d, %v", v, n, again, err)
					}
				}
			}
		}
		if p, err := readExecuteParams(q.Get); err == nil {
			if p.wait < 0 || p.wait > maxWaitSeconds*time.Second {
				t.Fatalf("%q: waits %v", raw, p.wait)
			}
			for _, ref := range p.refs {
				if ref == "" || ref != strings.TrimSpace(ref) {
					t.Fatalf("%q: ref %q", raw, ref)
				}
			}
		}
	})
}

func trimmed(parts []string) []string {
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}
