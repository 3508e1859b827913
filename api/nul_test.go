package api

import (
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// TestDecodeRefusesNUL: a JSON string holding U+0000 is refused with the
// path of the field that holds it; the escape written as text, and bodies
// without it, decode as before.
func TestDecodeRefusesNUL(t *testing.T) {
	tests := []struct {
		body  string
		field string // "": accepted
	}{
		{`{"service":"pay\u0000ments"}`, "service"},
		{`{"service":"pay","version":"1\u0000"}`, "version"},
		{`{"changes":["CHG1","CHG2","\u0000"]}`, "changes[2]"},
		{`{"pipeline":{"provider":"github","run_id":"7\u0000"}}`, "pipeline.run_id"},
		{`{"changes":[],"incidents":["INC1"],"pipeline":{"url":"\u0000"}}`, "pipeline.url"},
		{`{"a":[[1,{"b":"x"}],{"c":["\u0000"]}]}`, "a[1].c[0]"},
		{`{"ser\u0000vice":"pay"}`, "ser\x00vice"},
		{`"\u0000"`, "body"},
		{`{"service":"a\\u0000b"}`, ""}, // a backslash and "u0000": text
		{`{"service":"pay"}`, ""},
	}
	for _, tt := range tests {
		var v map[string]any
		if tt.body[0] == '"' {
			var s string
			err := decodeJSONBytes([]byte(tt.body), &s)
			if ce, ok := err.(*core.Error); !ok || ce.Field != tt.field {
				t.Errorf("%s: %v, want refused naming %q", tt.body, err, tt.field)
			}
			continue
		}
		err := decodeJSONBytes([]byte(tt.body), &v)
		if tt.field == "" {
			if err != nil {
				t.Errorf("%s: %v, want accepted", tt.body, err)
			}
			continue
		}
		ce, ok := err.(*core.Error)
		if !ok || ce.Kind != core.KindInvalid || ce.Field != tt.field {
			t.Errorf("%s: %v, want invalid naming %q", tt.body, err, tt.field)
		}
	}
}
