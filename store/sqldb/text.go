package sqldb

import (
	"reflect"
	"strings"
	"unicode/utf8"
)

// Text bound for the database must be valid UTF-8 without NUL: PostgreSQL
// refuses both in text and jsonb ("invalid byte sequence for encoding
// UTF8", "unsupported Unicode escape sequence"), and a value one dialect
// refuses must not behave differently on the other. Identifiers (record
// keys, event ids, dedupe keys) that are not valid text are refused or not
// found; free text (titles, reasons, headers) is made valid by replacing
// each offending byte with U+FFFD. Raw webhook bodies are bytes (bytea,
// blob) and kept exactly as received.

// TextOK reports whether s can be stored in a text column as it is.
func TextOK(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// CleanText returns s with invalid UTF-8 and NUL replaced by U+FFFD.
func CleanText(s string) string {
	if TextOK(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// CleanStrings makes every string reachable from the struct v points to
// (fields, slices, nested structs and pointers to them) valid text, in
// place. Canonical records are small; this runs once per stored version.
func CleanStrings(v any) { cleanValue(reflect.ValueOf(v)) }

func cleanValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			cleanValue(v.Elem())
		}
	case reflect.String:
		if s := v.String(); !TextOK(s) && v.CanSet() {
			v.SetString(CleanText(s))
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			cleanValue(v.Index(i))
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				cleanValue(v.Field(i))
			}
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			return
		}
		for _, k := range v.MapKeys() {
			val := v.MapIndex(k).String()
			if !TextOK(k.String()) || !TextOK(val) {
				v.SetMapIndex(k, reflect.Value{})
				v.SetMapIndex(reflect.ValueOf(CleanText(k.String())).Convert(v.Type().Key()), reflect.ValueOf(CleanText(val)).Convert(v.Type().Elem()))
			}
		}
	}
}
