package mapping

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/jsonscan"
)

// FuzzExtractText checks doc.extract's in-place reading of indexed values
// (scalarText, members) against the general gjson path it replaces: the
// same value, JSON text, existence and error for every JSON value, read
// whole or through one plain key.
func FuzzExtractText(f *testing.F) {
	for _, s := range []string{
		`{"display_value":"Closed","value":3.0}`, `{"link":"x","value":{"value":"y"}}`,
		`{"name":"High","id":"2"}`, `{"val\u0075e":1,"value":2}`, `{"value":"a\nb","name":"n"}`,
		`"a\"b"`, `-0`, `1e400`, `2.50`, `[1,{"value":"x"},[2]]`, `{"a":{}}`, `null`, `true`,
		`{"value":{"value":{"value":{"value":{"value":1}}}}}`, `{"name":{"name":"x"},"display_value":""}`,
	} {
		f.Add([]byte(s), "display_value")
	}
	f.Fuzz(func(t *testing.T, raw []byte, key string) {
		if !jsonscan.Valid(raw) || len(bytes.TrimSpace(raw)) != len(raw) {
			return // spans hold exactly one value
		}
		for _, rest := range []string{"", "display_value", "value", "name", key} {
			p := cpath{raw: "x", top: 0, rest: rest, plainRest: rest != "" && simpleKey(rest) && !strings.Contains(rest, ".")}
			if rest != "" && !p.plainRest {
				continue
			}
			d := doc{vals: []string{string(raw)}}
			for _, presence := range []bool{false, true} {
				v, r, ok, err := d.extract(p, presence)
				g := d.get(p)
				wv, werr := extract(g)
				if ok != g.Exists() {
					t.Fatalf("%s rest %q: exists %v, want %v", raw, rest, ok, g.Exists())
				}
				if !ok {
					continue
				}
				if r != g.Raw {
					t.Fatalf("%s rest %q: raw %q, want %q", raw, rest, r, g.Raw)
				}
				if fmt.Sprint(err) != fmt.Sprint(werr) {
					t.Fatalf("%s rest %q: err %v, want %v", raw, rest, err, werr)
				}
				if presence {
					if (v.k == vNone) != (wv.k == vNone) {
						t.Fatalf("%s rest %q: presence %v, want %v", raw, rest, v.k, wv.k)
					}
				} else if !reflect.DeepEqual(v, wv) {
					t.Fatalf("%s rest %q: value %#v, want %#v", raw, rest, v, wv)
				}
			}
		}
	})
}
