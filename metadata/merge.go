package metadata

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// field is one top-level key of a JSON object with its encoded value.
type field struct {
	key   string
	value []byte
}

// splitObject returns the top-level members of the JSON object obj in their
// order, each value byte for byte as it appears in obj. A key given twice
// keeps its first position and its last value, as encoding/json reads it.
func splitObject(obj []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var fields []field
	index := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("object key %v is not a string", tok)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("value of %q: %w", key, err)
		}
		if i, seen := index[key]; seen {
			fields[i].value = raw
			continue
		}
		index[key] = len(fields)
		fields = append(fields, field{key: key, value: raw})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON object")
	}
	return fields, nil
}

// mergeObject returns the JSON object obj with the keys of set replaced in
// place (or appended in set's order when absent) and the keys in drop
// removed. Every other member keeps its position and its value bytes.
func mergeObject(obj []byte, set []field, drop ...string) ([]byte, error) {
	fields, err := splitObject(obj)
	if err != nil {
		return nil, err
	}
	replace := make(map[string][]byte, len(set))
	for _, f := range set {
		replace[f.key] = f.value
	}
	skip := make(map[string]bool, len(drop))
	for _, k := range drop {
		skip[k] = true
	}
	out := make([]byte, 0, len(obj)+64*len(set))
	out = append(out, '{')
	first := true
	member := func(key string, value []byte) {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendJSONString(out, key)
		out = append(out, ':')
		out = append(out, value...)
	}
	for _, f := range fields {
		if skip[f.key] {
			continue
		}
		if v, ok := replace[f.key]; ok {
			member(f.key, v)
			delete(replace, f.key)
			continue
		}
		member(f.key, f.value)
	}
	for _, f := range set {
		if v, ok := replace[f.key]; ok {
			member(f.key, v)
		}
	}
	return append(out, '}'), nil
}

// appendJSONString appends s as a JSON string without encoding/json's HTML
// escaping, so that keys and values such as "a<b" keep their spelling.
func appendJSONString(dst []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

func intField(key string, v int64) field {
	return field{key: key, value: strconv.AppendInt(nil, v, 10)}
}

func stringField(key, v string) field {
	return field{key: key, value: appendJSONString(nil, v)}
}
