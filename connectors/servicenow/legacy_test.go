package servicenow

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
	"github.com/tollgate-dev/tollgate/core"
)

// The legacy functions are Classify as it was before bodies were read in
// place with gjson: the whole body decoded into map[string]json.RawMessage
// and the members re-unmarshalled. They are the oracle of
// FuzzClassifyDifferential and are not to be changed.

func legacyClassify(h http.Header, body []byte) (connectors.Inbound, error) {
	rec, err := legacyRecord(body)
	if err != nil {
		return connectors.Inbound{}, err
	}
	class, err := legacySysClassName(rec)
	if err != nil {
		return connectors.Inbound{}, err
	}
	return connectors.Inbound{Type: class, Headers: hook.Keep(h, keptHeaders...)}, nil
}

func legacyRecord(body []byte) (map[string]json.RawMessage, error) {
	obj, err := hook.Object(body)
	if err != nil {
		return nil, err
	}
	if _, own := obj["sys_class_name"]; own {
		return obj, nil
	}
	raw, wrapped := obj["result"]
	if !wrapped {
		return obj, nil
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(raw, &rec); err != nil || rec == nil {
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) == nil && list != nil {
			return nil, core.Invalid("result", "is a list of %d records; a delivery must carry exactly one record", len(list))
		}
		return nil, core.Invalid("result", "must be a record object, got %s", hook.JSONKind(raw))
	}
	return rec, nil
}

func legacySysClassName(rec map[string]json.RawMessage) (string, error) {
	const field = "sys_class_name"
	raw, ok := rec[field]
	if !ok {
		return "", core.Invalid(field, "missing: cannot tell which table the record belongs to (include sys_class_name in the message)")
	}
	v, err := legacyValue(raw)
	if err != nil {
		return "", core.Invalid(field, "%s", err.Error())
	}
	return hook.Label(field, v, hook.MaxTypeLen)
}

func legacyValue(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var pair struct {
		Value json.RawMessage `json:"value"`
	}
	switch hook.JSONKind(raw) {
	case "null":
		return "", nil
	case "a number", "a boolean":
		return string(raw), nil
	case "an object":
		if err := json.Unmarshal(raw, &pair); err != nil {
			return "", err
		}
		if pair.Value == nil {
			return "", core.Errorf(core.KindInvalid, "object has no value member")
		}
		if k := hook.JSONKind(pair.Value); k == "an object" || k == "an array" {
			return "", core.Errorf(core.KindInvalid, "value member is %s", k)
		}
		return legacyValue(pair.Value)
	default:
		return "", core.Errorf(core.KindInvalid, "must be a string or a {display_value,value} pair, got %s", hook.JSONKind(raw))
	}
}

// TestClassifyLikeLegacy pins the corners where reading in place could
// part from decoding: duplicate keys (the last wins, as encoding/json
// does; gjson's own paths would take the first), escapes and unicode in
// keys and values, the case-insensitive value member of a pair, and the
// envelope rules. Each case is checked against the legacy oracle and
// against the expected outcome.
func TestClassifyLikeLegacy(t *testing.T) {
	tests := []struct {
		name, body, want string // want: the type, or a part of the error
		ok               bool
	}{
		{"duplicate class, last wins", `{"sys_class_name":"incident","sys_class_name":"problem"}`, "problem", true},
		{"duplicate class, last null", `{"sys_class_name":"incident","sys_class_name":null}`, "sys_class_name: is empty", false},
		{"duplicate result, last wins", `{"result":{"sys_class_name":"a"},"result":{"sys_class_name":"b"}}`, "b", true},
		{"duplicate result, last a list", `{"result":{"sys_class_name":"a"},"result":[1,2]}`, "list of 2 records", false},
		{"duplicate value member, last wins", `{"sys_class_name":{"value":"a","value":"b"}}`, "b", true},
		{"value member case-insensitive", `{"sys_class_name":{"VALUE":"a"}}`, "a", true},
		{"value members of both cases, last wins", `{"sys_class_name":{"value":"a","Value":"b"}}`, "b", true},
		{"value member null", `{"sys_class_name":{"value":null}}`, "sys_class_name: is empty", false},
		{"value member number", `{"sys_class_name":{"display_value":"x","value":-1.5e3}}`, "-1.5e3", true},
		{"escaped key", `{"sys_class\u005fname":"incident"}`, "incident", true},
		{"escaped result key", `{"\u0072esult":{"sys_class_name":"incident"}}`, "incident", true},
		{"escaped value key", `{"sys_class_name":{"v\u0061lue":"incident"}}`, "incident", true},
		{"key with dot is not a path", `{"sys_class_name.value":"x","result.sys_class_name":"y"}`, "sys_class_name: missing", false},
		{"key case matters", `{"SYS_CLASS_NAME":"incident"}`, "sys_class_name: missing", false},
		{"escapes in value", `{"sys_class_name":"u_caf\u00e9\/x"}`, "u_café/x", true},
		{"unicode in value", `{"sys_class_name":"u_日本"}`, "u_日本", true},
		{"lone surrogate becomes U+FFFD", `{"sys_class_name":"u_\ud800"}`, "u_\uFFFD", true},
		{"invalid UTF-8 becomes U+FFFD", "{\"sys_class_name\":\"u_\xff\"}", "u_\uFFFD", true},
		{"escaped control character", `{"sys_class_name":"a\u0001"}`, "contains control characters", false},
		{"whitespace around", " \r\n\t{ \"sys_class_name\" : \" incident \" } \n", "incident", true},
		{"nested class not read", `{"number":{"sys_class_name":"incident"}}`, "sys_class_name: missing", false},
		{"result not unwrapped with own class", `{"sys_class_name":null,"result":{"sys_class_name":"x"}}`, "sys_class_name: is empty", false},
		{"result true", `{"result":true}`, "result: must be a record object, got a boolean", false},
		{"result number", `{"result":1}`, "result: must be a record object, got a number", false},
		{"result list with spaces", `{"result":[ {} , {} , {} ]}`, "list of 3 records", false},
		{"result empty object", `{"result":{}}`, "sys_class_name: missing", false},
		{"trailing garbage", `{"sys_class_name":"x"} x`, "not valid JSON", false},
		{"leading vertical tab", "\v{\"sys_class_name\":\"x\"}", "not valid JSON", false},
		{"bool body", `true`, "not a JSON object (it is a JSON bool)", false},
		{"null body", ` null `, "not a JSON object (it is null)", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := Classify(http.Header{}, []byte(tc.body))
			old, oldErr := legacyClassify(http.Header{}, []byte(tc.body))
			hooktest.SameResult(t, in, err, old, oldErr)
			if !tc.ok {
				hooktest.RequireInvalid(t, err, tc.want)
				return
			}
			if err != nil || in.Type != tc.want {
				t.Fatalf("got %+v, %v; want type %q", in, err, tc.want)
			}
		})
	}
}

// TestValueInvalid documents the one deliberate change to Value: raw that
// is not JSON is a KindInvalid error (it used to be whatever encoding/json
// or the shape check made of it).
func TestValueInvalid(t *testing.T) {
	for _, raw := range []string{``, `{`, `"abc`, `{"value":}`} {
		if _, err := Value(json.RawMessage(raw)); !core.IsKind(err, core.KindInvalid) {
			t.Errorf("Value(%q) = %v, want KindInvalid", raw, err)
		}
	}
}

// FuzzClassifyDifferential checks that Classify gives exactly what the
// legacy encoding/json implementation gave: the same Inbound, or an error
// of the same kind, field and message.
func FuzzClassifyDifferential(f *testing.F) {
	for _, name := range hooktest.Files(f, "*.json*") {
		f.Add(hooktest.Read(f, name))
	}
	for _, b := range hooktest.FuzzBodies {
		f.Add([]byte(b))
		f.Add([]byte(`{"sys_class_name":` + b + `}`))
		f.Add([]byte(`{"result":{"sys_class_name":{"value":` + b + `}}}`))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h := hooktest.Header("User-Agent", "ServiceNow/1.0")
		in, err := Classify(h, body)
		old, oldErr := legacyClassify(h, body)
		hooktest.SameResult(t, in, err, old, oldErr)
	})
}

// BenchmarkClassify compares classification alone (no HMAC) of the change
// record, new against the legacy implementation.
func BenchmarkClassify(b *testing.B) {
	body := hooktest.Read(b, "sn_chg_rest.get_change.response.json")
	for _, bc := range []struct {
		name     string
		classify func(http.Header, []byte) (connectors.Inbound, error)
	}{{"gjson", Classify}, {"legacy", legacyClassify}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.classify(http.Header{}, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
