package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are the units parseSize reads, lower-cased: decimal as
// disks are sold, binary as memory is.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
	"ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40,
}

// parseSize reads a byte count: digits, then optionally a unit (500MB,
// 20GiB, 2T), in any case.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(t)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	switch {
	case err != nil || !ok:
		return 0, fmt.Errorf("size %q: want a number of bytes, alone or with a unit (500MB, 20GiB)", s)
	case n > math.MaxInt64/unit:
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * unit, nil
}
