package app_test

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/tollgate-dev/tollgate/core"
)

// chromiumPath finds Debian's chromium (scripts/test.sh installs it when
// missing and it can). Without one the browser tests fail under CI=true
// and are skipped elsewhere, saying why.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TOLLGATE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH and CI=true: install Debian's chromium package (scripts/test.sh does when root)")
	}
	t.Skip("browser tests skipped: no chromium on PATH (apt-get install chromium, or set TOLLGATE_CHROMIUM)")
	return ""
}

// browser starts a headless Chromium with a fresh profile. Start it after
// the server: cleanups run last-first, so the browser (and the sockets it
// opens ahead of use) is gone before the server drains its connections.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	return ctx
}

// TestUIBrowser walks the UI in a real Chromium as a person would: sign
// in, see a check waiting on a change, see it allowed once the approval
// webhook lands, edit a mapping with a preview and save it, run a
// reconciliation report and acknowledge the unauthorized deployment in it, have a form
// without its CSRF token refused, sign out (the old cookie then opens
// nothing), and screenshot every page at 1280 px and 390 px.
func TestUIBrowser(t *testing.T) {
	path := chromiumPath(t)
	s := boot(t, "postgres", e2eConfig)
	ctx := browser(t, path)
	ci, _ := s.token(core.RoleCI)
	t0 := time.Now().UTC().Add(-time.Minute)
	s.sendWebhook(change("CHG4001", core.ApprovalRequested, t0))
	s.waitFor("CHG4001 stored", func() bool { return s.changeState("CHG4001") == "requested" })
	s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": "payments-api", "environment": "production",
		"version": "1.9.0", "status": "succeeded", "provider": "github", "run_id": "77", "changes": []string{"CHG4001"},
		"started_at": time.Now().UTC().Add(-2 * time.Hour)}, nil)
	s.signOffPIR("payments-api", "1.9.0", "production")

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}

	// Sign in through the form.
	do("sign in", chromedp.Navigate(s.url+"/ui/"), chromedp.SendKeys(chromedp.ID("token"), adminSecret),
		chromedp.Click(chromedp.CSS(`form[action="/ui/signin"] button`)), chromedp.WaitVisible(chromedp.ID("h-wait")))

	// A check waiting on the change shows on the dashboard, with its reason.
	req := map[string]any{"service": "payments-api", "environment": "production", "version": "2.1.0",
		"team": "payments", "changes": []string{"CHG4001"}}
	answered := make(chan gateAnswer, 1)
	go func() { answered <- s.check(ci, "?wait=30s", req) }()
	s.waitFor("the waiting check in the browser", func() bool {
		do("reload", chromedp.Navigate(s.url+"/ui/"), chromedp.WaitVisible(chromedp.ID("h-wait")))
		return strings.Contains(text("main"), "payments-api 2.1.0") && strings.Contains(text("main"), core.CodeChangeNotApproved)
	})
	shots := screenshots(t)
	shots.take(ctx, "dashboard-waiting", "")

	// The approval arrives; the dashboard shows the check allowed.
	s.sendWebhook(change("CHG4001", core.ApprovalApproved, t0.Add(time.Second)))
	select {
	case a := <-answered:
		if a.Decision != "allow" {
			t.Fatalf("after approval: %s %s", a.Decision, a.codes())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("long-poll did not answer")
	}
	do("dashboard after approval", chromedp.Navigate(s.url+"/ui/"), chromedp.WaitVisible(chromedp.CSS("tr.decision .badge.allow")))
	if got := text("tr.decision"); !strings.Contains(got, "payments-api 2.1.0") || !strings.Contains(got, "allow") {
		t.Errorf("newest decision: %q", got)
	}

	// Edit a mapping: preview on a sample, then save as a new version.
	do("mapping preview", chromedp.Navigate(s.url+"/ui/mappings/generic-change"), chromedp.WaitVisible(chromedp.ID("source")),
		chromedp.SetValue(chromedp.ID("sample"), `{"key":"CHG9","state":"new","approval":"requested","source_updated_at":"2026-11-27T10:00:00Z"}`),
		chromedp.Click(chromedp.CSS(`button[value="preview"]`)), chromedp.WaitVisible(chromedp.CSS("pre.preview")))
	if got := text("pre.preview"); !strings.Contains(got, "CHG9") {
		t.Errorf("preview: %q", got)
	}
	shots.take(ctx, "mapping-preview", "")
	do("mapping save", chromedp.Click(chromedp.CSS(`button[value="save"]`)), chromedp.WaitVisible(chromedp.CSS("p.good")))
	if got := text("p.good"); !strings.Contains(got, "Saved as version 1") {
		t.Errorf("after save: %q", got)
	}

	// Run a reconciliation report, find the deployment made without the
	// gate's allow, acknowledge it.
	day := time.Now().UTC().Format(time.DateOnly)
	do("run report", chromedp.Navigate(s.url+"/ui/reconciliation"), chromedp.WaitVisible(chromedp.ID("r-from")),
		chromedp.SetValue(chromedp.ID("r-from"), time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)),
		chromedp.SetValue(chromedp.ID("r-to"), day), chromedp.SetValue(chromedp.ID("r-env"), "production"),
		chromedp.Click(chromedp.CSS(`form[action="/ui/reconciliation"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#code-"+core.CodeGateBypassed)))
	bypass := "#code-" + core.CodeGateBypassed + " + article, #code-" + core.CodeGateBypassed + " ~ article"
	if got := text(bypass); !strings.Contains(got, "payments-api 1.9.0") {
		t.Fatalf("the unauthorized deployment is not in the report: %q", got)
	}
	shots.take(ctx, "report", "")
	do("acknowledge", chromedp.SendKeys(chromedp.CSS("#code-"+core.CodeGateBypassed+" ~ article textarea"), "emergency fix, approved by phone"),
		chromedp.Click(chromedp.CSS("#code-"+core.CodeGateBypassed+" ~ article form.ack button")),
		chromedp.WaitVisible(chromedp.CSS("article.acked")))
	if got := text("article.acked"); !strings.Contains(got, "emergency fix, approved by phone") || !strings.Contains(got, "acknowledged") {
		t.Errorf("acknowledged finding: %q", got)
	}

	// A form without its CSRF token is refused.
	do("post without CSRF", chromedp.Navigate(s.url+"/ui/tokens"), chromedp.WaitVisible(chromedp.ID("t-name")),
		chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('form[action="/ui/tokens"] input[name=csrf]').forEach(e => e.remove())`),
		chromedp.SendKeys(chromedp.ID("t-name"), "sneaky"), chromedp.Click(chromedp.CSS(`form[action="/ui/tokens"] button`)),
		chromedp.WaitVisible(chromedp.CSS("p.alert")))
	if got := text("p.alert"); !strings.Contains(got, "403") || !strings.Contains(got, "refused") {
		t.Errorf("form without CSRF: %q", got)
	}

	// Every page, at a desktop and a phone width.
	for _, p := range []struct{ name, path, ready string }{
		{"dashboard", "/ui/", "#h-chart"}, {"releases", "/ui/releases", "table"}, {"deployments", "/ui/deployments", "table"},
		{"change", "/ui/changes/CHG4001", "table"}, {"mappings", "/ui/mappings", "table"},
		{"mapping", "/ui/mappings/generic-change", "#source"}, {"inbox", "/ui/inbox", "table"}, {"policy", "/ui/policy", "table"},
		{"audit", "/ui/audit?verify=1", "table"}, {"tokens", "/ui/tokens", "table"}, {"connections", "/ui/connections", "table"},
		{"reconciliation", "/ui/reconciliation", "table"},
	} {
		do(p.name, chromedp.Navigate(s.url+p.path), chromedp.WaitVisible(chromedp.CSS(p.ready)))
		shots.take(ctx, p.name, p.ready)
	}

	// Sign out: the server ends the session, so the old cookie opens nothing.
	old, err := chromedp.Run(ctx, chromedp.Action[network.GetCookiesResult](func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{s.url + "/ui/"}})
	}))
	if err != nil || len(old.Cookies) == 0 {
		t.Fatalf("cookies: %v %v", old, err)
	}
	do("sign out", chromedp.Navigate(s.url+"/ui/"), chromedp.Click(chromedp.CSS(`form.signout button`)), chromedp.WaitVisible(chromedp.ID("token")))
	req2, _ := http.NewRequest("GET", s.url+"/ui/audit", nil)
	for _, c := range old.Cookies {
		req2.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("old session cookie after sign-out: %d, want 401", resp.StatusCode)
	}
}

// shotDir collects the screenshots: TOLLGATE_SCREENSHOTS, else a new
// temporary folder that is kept for a person to look at.
type shotDir struct {
	t   *testing.T
	dir string
}

func screenshots(t *testing.T) shotDir {
	dir := os.Getenv("TOLLGATE_SCREENSHOTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "tollgate-ui-screenshots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return shotDir{t: t, dir: dir}
}

// take screenshots the current page at 1280 px and 390 px wide and checks
// each is not blank.
func (d shotDir) take(ctx context.Context, name, ready string) {
	d.t.Helper()
	for _, w := range []int64{1280, 390} {
		steps := []chromedp.Action[chromedp.Void]{chromedp.EmulateViewport(w, 900)}
		if ready != "" {
			steps = append(steps, chromedp.WaitVisible(chromedp.CSS(ready)))
		}
		if err := chromedp.Do(ctx, steps...); err != nil {
			d.t.Fatalf("viewport %d: %v", w, err)
		}
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			d.t.Fatalf("screenshot %s: %v", name, err)
		}
		file := filepath.Join(d.dir, name+"-"+map[int64]string{1280: "1280", 390: "390"}[w]+".png")
		if err := os.WriteFile(file, buf, 0o644); err != nil {
			d.t.Fatal(err)
		}
		if err := notBlank(buf, int(w)); err != "" {
			d.t.Errorf("%s: %s", file, err)
		}
	}
	_ = chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900))
}

// notBlank checks a screenshot has the expected width and real content:
// several colours, none covering nearly everything.
func notBlank(buf []byte, width int) string {
	img, err := png.Decode(bytes.NewReader(buf))
	if err != nil {
		return "not a PNG: " + err.Error()
	}
	b := img.Bounds()
	if b.Dx() != width {
		return "width " + strconv.Itoa(b.Dx())
	}
	counts := map[[3]uint32]int{}
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[[3]uint32{r >> 8, g >> 8, bl >> 8}]++
			n++
		}
	}
	top := 0
	for _, c := range counts {
		top = max(top, c)
	}
	if len(counts) < 16 || top*100 > n*97 {
		return "looks blank: " + strconv.Itoa(len(counts)) + " colours"
	}
	return ""
}
