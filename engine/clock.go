package engine

import "math"

// Never is the time (Unix ms) of a deadline that never comes: one past
// every time a timer index holds.
const Never = math.MaxInt64

// afterSeconds returns ms plus secs seconds, in Unix ms, saturated at
// Never: Conductor's timeouts and delays are longs, and a timeout of
// Long.MAX_VALUE seconds is one that never comes, not one that wrapped
// into the past and fires at once.
func afterSeconds(ms, secs int64) int64 {
	switch {
	case secs > (Never-ms)/1000:
		return Never
	case secs < 0:
		// Refused at registration; an inline value that got past is
		// read as no delay.
		return ms
	}
	return ms + secs*1000
}

// afterMs returns ms plus delta milliseconds, saturated at Never as
// afterSeconds is: a backoffJitterMs the API takes up to Long.MAX_VALUE
// adds up to that, and a sum wrapped into the past retries at once.
func afterMs(ms, delta int64) int64 {
	if ms > 0 && delta > Never-ms {
		return Never
	}
	return ms + delta
}

// maxDelaySeconds bounds a retry delay computed from a task's policy, as
// Conductor's decider bounds one that overflows its int: about 68 years.
const maxDelaySeconds = math.MaxInt32
