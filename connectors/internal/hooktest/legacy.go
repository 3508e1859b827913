package hooktest

import (
	"encoding/json"
	"strings"

	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/core"
)

// The Legacy functions are the encoding/json readers the connectors used
// before they read bodies in place with gjson (hook.ParseObject): the one
// oracle of hook's FuzzRead, which checks every in-place reader the
// connectors use against them. hook.Object, the old decoder, is still in
// hook and serves as the oracle of the body checks.

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

// LegacyValueMember is the old way ServiceNow read the value member of a
// {display_value,value} pair: raw (one JSON object) decoded into a struct
// field tagged "value", so the key matches case-insensitively and the last
// match wins. nil when there is none.
func LegacyValueMember(raw json.RawMessage) json.RawMessage {
	var pair struct {
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(raw, &pair) != nil {
		return nil
	}
	return pair.Value
}

func legacyIsNull(raw json.RawMessage) bool {
	return strings.TrimSpace(string(raw)) == "null"
}
