package servicenow

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
	"github.com/tollgate-dev/tollgate/core"
)

func TestNewRequiresSecret(t *testing.T) {
	hooktest.RunNewSecretCases(t, Type, New)
}

func TestVerify(t *testing.T) {
	w := hooktest.New(t, Type, New)
	hooktest.RunVerify(t, w, hooktest.SignatureOrBasicCases(hooktest.Read(t, "sn_chg_rest.get_change.response.json")))
}

func TestClassifyFixtures(t *testing.T) {
	tests := []struct {
		file string
		want string // the type, or for an invalid body a part of the error
		ok   bool
	}{
		// Change Management API: every field a {display_value,value} pair.
		{"sn_chg_rest.get_change.response.json", "change_request", true},
		// Table API: plain values and {link,value} references.
		{"table_api.get_incident.response.json", "incident", true},
		{"table_api.post_incident.response.json", "incident", true},
		{"table_api.patch_incident.response.json", "incident", true},
		// List responses are not one record.
		{"sn_chg_rest.list_changes.response.json", "result: is a list of 1 records", false},
		{"table_api.get_problem_list.response.json", "result: is a list of 1 records", false},
		// DevOps API responses are not records.
		{"sn_devops.get_changeInfo.response.json", "sys_class_name: missing", false},
		{"sn_devops.post_changeControl.response.json", "sys_class_name: missing", false},
		// Published with // comments: not JSON.
		{"sn_chg_rest.get_change_nextstates.response.doc-verbatim.jsonc", "not valid JSON", false},
	}
	if n := len(hooktest.Files(t, "*.json*")); n != len(tests) {
		t.Fatalf("%d fixtures, %d cases: add the new fixture here", n, len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			in, err := Classify(hooktest.WithSecrets(hooktest.Header("User-Agent", "ServiceNow/1.0")), hooktest.Read(t, tc.file))
			hooktest.CheckClassify(t, in, err)
			if !tc.ok {
				hooktest.RequireInvalid(t, err, tc.want)
				return
			}
			if err != nil || in.Type != tc.want || in.DeliveryID != "" || in.Headers["User-Agent"] == "" {
				t.Fatalf("got %+v, %v", in, err)
			}
		})
	}
}

// TestClassifyUnwrapped checks that a record without the {"result": …}
// envelope classifies the same as with it.
func TestClassifyUnwrapped(t *testing.T) {
	for _, file := range []string{"sn_chg_rest.get_change.response.json", "table_api.get_incident.response.json"} {
		var env struct{ Result json.RawMessage }
		if err := json.Unmarshal(hooktest.Read(t, file), &env); err != nil {
			t.Fatal(err)
		}
		wrapped, err1 := Classify(http.Header{}, hooktest.Read(t, file))
		bare, err2 := Classify(http.Header{}, env.Result)
		if err1 != nil || err2 != nil || wrapped.Type != bare.Type {
			t.Fatalf("%s: wrapped %+v/%v, bare %+v/%v", file, wrapped, err1, bare, err2)
		}
	}
}

func TestClassifyShapes(t *testing.T) {
	tests := []struct {
		name, body, want string
		ok               bool
	}{
		{"plain", `{"sys_class_name":"change_request","number":"CHG1"}`, "change_request", true},
		{"pair", `{"sys_class_name":{"display_value":"Change Request","value":"change_request"}}`, "change_request", true},
		{"reference", `{"result":{"sys_class_name":{"link":"https://x/api/now/table/sys_db_object/1","value":"incident"}}}`, "incident", true},
		{"own sys_class_name beats result", `{"sys_class_name":"u_deploy","result":"ok"}`, "u_deploy", true},
		{"no class", `{"number":"INC1"}`, "sys_class_name: missing", false},
		{"null class", `{"sys_class_name":null}`, "sys_class_name: is empty", false},
		{"empty class", `{"sys_class_name":""}`, "sys_class_name: is empty", false},
		{"pair without value", `{"sys_class_name":{"display_value":"Incident"}}`, "no value member", false},
		{"pair with object value", `{"sys_class_name":{"value":{"a":1}}}`, "value member is an object", false},
		{"array class", `{"sys_class_name":["incident"]}`, "must be a string or a {display_value,value} pair", false},
		{"result string", `{"result":"x"}`, "result: must be a record object, got a string", false},
		{"result null", `{"result":null}`, "result: must be a record object", false},
		{"result empty list", `{"result":[]}`, "list of 0 records", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := Classify(http.Header{}, []byte(tc.body))
			hooktest.CheckClassify(t, in, err)
			if !tc.ok {
				hooktest.RequireInvalid(t, err, tc.want)
				return
			}
			if err != nil || in.Type != tc.want {
				t.Fatalf("got %+v, %v", in, err)
			}
		})
	}
}

func TestValue(t *testing.T) {
	tests := []struct{ raw, want string }{
		{`"3"`, "3"},
		{`3.0`, "3.0"},
		{`true`, "true"},
		{`null`, ""},
		{`{"display_value":"Closed","value":3.0}`, "3.0"},
		{`{"display_value":"x","value":"abc","display_value_internal":"y"}`, "abc"},
		{`{"link":"https://x","value":"sysid"}`, "sysid"},
	}
	for _, tc := range tests {
		got, err := Value(json.RawMessage(tc.raw))
		if err != nil || got != tc.want {
			t.Errorf("Value(%s) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
}

func FuzzClassify(f *testing.F) {
	for _, name := range hooktest.Files(f, "*.json*") {
		f.Add(hooktest.Read(f, name))
	}
	f.Add([]byte(`{"result":{"sys_class_name":{"value":{"value":"x"}}}}`))
	for _, b := range hooktest.FuzzSeeds(`{"sys_class_name":%s}`, `{"result":{"sys_class_name":{"value":%s}}}`) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := Classify(hooktest.WithSecrets(http.Header{}), body)
		hooktest.CheckClassify(t, in, err)
	})
}

// TestClassifyCorners pins the corners where reading in place could part
// from decoding: duplicate keys (the last wins, as encoding/json does;
// gjson's own paths would take the first), escapes and unicode in keys and
// values, the case-insensitive value member of a pair, and the envelope
// rules.
func TestClassifyCorners(t *testing.T) {
	hooktest.RunClassify(t, Classify, []hooktest.ClassifyCase{
		{Name: "duplicate class, last wins", Body: `{"sys_class_name":"incident","sys_class_name":"problem"}`, Want: "problem", OK: true},
		{Name: "duplicate class, last null", Body: `{"sys_class_name":"incident","sys_class_name":null}`, Want: "sys_class_name: is empty"},
		{Name: "duplicate result, last wins", Body: `{"result":{"sys_class_name":"a"},"result":{"sys_class_name":"b"}}`, Want: "b", OK: true},
		{Name: "duplicate result, last a list", Body: `{"result":{"sys_class_name":"a"},"result":[1,2]}`, Want: "list of 2 records"},
		{Name: "duplicate value member, last wins", Body: `{"sys_class_name":{"value":"a","value":"b"}}`, Want: "b", OK: true},
		{Name: "value member case-insensitive", Body: `{"sys_class_name":{"VALUE":"a"}}`, Want: "a", OK: true},
		{Name: "value members of both cases, last wins", Body: `{"sys_class_name":{"value":"a","Value":"b"}}`, Want: "b", OK: true},
		{Name: "value member null", Body: `{"sys_class_name":{"value":null}}`, Want: "sys_class_name: is empty"},
		{Name: "value member number", Body: `{"sys_class_name":{"display_value":"x","value":-1.5e3}}`, Want: "-1.5e3", OK: true},
		{Name: "escaped key", Body: `{"sys_class\u005fname":"incident"}`, Want: "incident", OK: true},
		{Name: "escaped result key", Body: `{"\u0072esult":{"sys_class_name":"incident"}}`, Want: "incident", OK: true},
		{Name: "escaped value key", Body: `{"sys_class_name":{"v\u0061lue":"incident"}}`, Want: "incident", OK: true},
		{Name: "key with dot is not a path", Body: `{"sys_class_name.value":"x","result.sys_class_name":"y"}`, Want: "sys_class_name: missing"},
		{Name: "key case matters", Body: `{"SYS_CLASS_NAME":"incident"}`, Want: "sys_class_name: missing"},
		{Name: "escapes in value", Body: `{"sys_class_name":"u_caf\u00e9\/x"}`, Want: "u_café/x", OK: true},
		{Name: "unicode in value", Body: `{"sys_class_name":"u_日本"}`, Want: "u_日本", OK: true},
		{Name: "lone surrogate becomes U+FFFD", Body: `{"sys_class_name":"u_\ud800"}`, Want: "u_\uFFFD", OK: true},
		{Name: "invalid UTF-8 becomes U+FFFD", Body: "{\"sys_class_name\":\"u_\xff\"}", Want: "u_\uFFFD", OK: true},
		{Name: "escaped control character", Body: `{"sys_class_name":"a\u0001"}`, Want: "contains control characters"},
		{Name: "whitespace around", Body: " \r\n\t{ \"sys_class_name\" : \" incident \" } \n", Want: "incident", OK: true},
		{Name: "nested class not read", Body: `{"number":{"sys_class_name":"incident"}}`, Want: "sys_class_name: missing"},
		{Name: "result not unwrapped with own class", Body: `{"sys_class_name":null,"result":{"sys_class_name":"x"}}`, Want: "sys_class_name: is empty"},
		{Name: "result true", Body: `{"result":true}`, Want: "result: must be a record object, got a boolean"},
		{Name: "result number", Body: `{"result":1}`, Want: "result: must be a record object, got a number"},
		{Name: "result list with spaces", Body: `{"result":[ {} , {} , {} ]}`, Want: "list of 3 records"},
		{Name: "result empty object", Body: `{"result":{}}`, Want: "sys_class_name: missing"},
		{Name: "trailing garbage", Body: `{"sys_class_name":"x"} x`, Want: "not valid JSON"},
		{Name: "leading vertical tab", Body: "\v{\"sys_class_name\":\"x\"}", Want: "not valid JSON"},
		{Name: "bool body", Body: `true`, Want: "not a JSON object (it is a JSON bool)"},
		{Name: "null body", Body: ` null `, Want: "not a JSON object (it is null)"},
	})
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
