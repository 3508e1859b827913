package servicenow

import (
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
)

// BenchmarkVerifyClassify measures verification plus classification of the
// Change Management API change record (~13 KB, every field a pair): one
// validation pass, then the envelope's and the record's top level walked
// in place. BenchmarkClassify measures classification alone.
func BenchmarkVerifyClassify(b *testing.B) {
	w := hooktest.New(b, Type, New)
	body := hooktest.Read(b, "sn_chg_rest.get_change.response.json")
	h := http.Header{}
	h.Set(hook.SignatureHeader, hook.Sign([]byte(hooktest.Secret), body))
	hooktest.BenchVerifyClassify(b, w, h, body)
}

// BenchmarkClassify measures classification alone (no HMAC) of the change
// record.
func BenchmarkClassify(b *testing.B) {
	hooktest.BenchClassify(b, Classify, http.Header{}, hooktest.Read(b, "sn_chg_rest.get_change.response.json"))
}
