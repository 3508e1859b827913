package hooktest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/core"
)

// The Legacy functions are the encoding/json readers the connectors used
// before they read bodies in place with gjson (hook.ParseObject). They are
// kept, unchanged, as the oracle of the differential fuzz tests: the fast
// Classify of every connector must give exactly what the old one gave.
// hook.Object, the old decoder, is still in hook and serves as the oracle
// of the body checks.

// LegacyValidObject is the old hook.ValidObject.
func LegacyValidObject(body []byte) error {
	trimmed := strings.TrimSpace(string(body))
	if trimmed == "" {
		return core.Errorf(core.KindInvalid, "body is empty")
	}
	if trimmed[0] != '{' && json.Valid(body) {
		return core.Errorf(core.KindInvalid, "body is not a JSON object (it is %s)", hook.JSONKind(body))
	}
	var v struct{}
	if err := json.Unmarshal(body, &v); err != nil {
		return core.Errorf(core.KindInvalid, "body is not valid JSON: %v", err)
	}
	return nil
}

// LegacyString is the old hook.String on a decoded object.
func LegacyString(obj map[string]json.RawMessage, field, path string) (s string, present bool, err error) {
	raw, ok := obj[field]
	if !ok || legacyIsNull(raw) {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, core.Invalid(path, "must be a string, got %s", hook.JSONKind(raw))
	}
	return s, true, nil
}

// LegacyMember is the old hook.Member on a decoded object.
func LegacyMember(obj map[string]json.RawMessage, field, path string) (m map[string]json.RawMessage, present bool, err error) {
	raw, ok := obj[field]
	if !ok || legacyIsNull(raw) {
		return nil, false, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false, core.Invalid(path, "must be an object, got %s", hook.JSONKind(raw))
	}
	return m, true, nil
}

func legacyIsNull(raw json.RawMessage) bool {
	return strings.TrimSpace(string(raw)) == "null"
}

// SameResult fails t unless two Classify results are identical: the same
// Inbound, and errors alike in kind, field and full message.
func SameResult(t testing.TB, got connectors.Inbound, gotErr error, want connectors.Inbound, wantErr error) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("new gives %+v, %v; old gave %+v, %v", got, gotErr, want, wantErr)
	}
	if wantErr != nil {
		var g, w *core.Error
		if !errors.As(gotErr, &g) || !errors.As(wantErr, &w) {
			t.Fatalf("errors are not *core.Error: new %v, old %v", gotErr, wantErr)
		}
		if g.Kind != w.Kind || g.Field != w.Field || gotErr.Error() != wantErr.Error() {
			t.Fatalf("new error %s %q %q; old %s %q %q", g.Kind, g.Field, gotErr, w.Kind, w.Field, wantErr)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("new gives %+v; old gave %+v", got, want)
	}
}

// FuzzBodies are hand-picked seeds for the differential fuzz tests: the
// corners where reading in place and decoding could part ways (duplicate
// keys, escapes in keys and values, invalid UTF-8, lone surrogates,
// whitespace, nesting, and bodies that are not objects).
var FuzzBodies = []string{
	``, ` `, "\v{}", "\u00a0{}", `null`, `[]`, `[1]`, `"s"`, `12`, `true`, `{`, `{}`, ` {} `, `{}x`, `{"a":1}{}`,
	`{"a":1,"a":2}`, `{"a":"x","a":null}`, `{"a":null,"a":"x"}`,
	`{"\u0061":"esc key"}`, `{"a\u0000":"nul"}`, `{"a":"\ud800"}`, `{"a":"\ud83d\ude00 \u00e9"}`,
	"{\"a\":\"\xff\xfe\"}", "{\"\xff\":1}", `{"a":"tab\tx"}`, `{"a":"x\/y\"z\\"}`,
	`{"a":-0.0e+1}`, `{"a":01}`, `{"a":1.}`, `{"a":[1,[2,{"b":[]}]]}`,
	`{"a.b":1,"a*":2,"a?":3,"a|b":4,"#":5,"@this":6}`,
	`{ "a" : "b" , "c" : { "d" : [ ] } }`,
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	`{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
	`{"a":"` + strings.Repeat("[{", 6000) + `"}`,
}
