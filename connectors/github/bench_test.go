package github

import (
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/connectors/internal/hooktest"
)

// BenchmarkVerifyClassify measures the per-delivery cost the webhook
// handler pays before the inbox insert: HMAC verification plus
// classification of a real workflow_run payload (~22 KB).
func BenchmarkVerifyClassify(b *testing.B) {
	w := hooktest.New(b, Type, New)
	body := hooktest.Read(b, "workflow_run.completed.json")
	h := http.Header{}
	h.Set(HeaderEvent, "workflow_run")
	h.Set(HeaderDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	h.Set(HeaderSignature, hook.Sign([]byte(hooktest.Secret), body))
	hooktest.BenchVerifyClassify(b, w, h, body)
}

// BenchmarkClassify measures classification alone (no HMAC) of the
// workflow_run payload.
func BenchmarkClassify(b *testing.B) {
	body := hooktest.Read(b, "workflow_run.completed.json")
	h := http.Header{}
	h.Set(HeaderEvent, "workflow_run")
	hooktest.BenchClassify(b, Classify, h, body)
}
