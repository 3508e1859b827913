package servicenow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
)

const (
	testUser = "tollgate.api"
	testPW   = "sn-pass-3e1f0a"
)

func pair(v string) map[string]any { return map[string]any{"display_value": v, "value": v} }
func ref(name, id string) map[string]any {
	return map[string]any{"display_value": name, "value": id, "link": "https://x/api/now/table/t/" + id}
}

func newClient(t *testing.T, fake *itsmfake.Server, mut func(*connectors.API)) *Client {
	t.Helper()
	api := connectors.API{URL: fake.URL, Username: testUser, Password: testPW, Timeout: 300 * time.Millisecond}
	if mut != nil {
		mut(&api)
	}
	hc := apiclient.New(apiclient.Options{Instance: "acme", Timeout: api.Timeout, RetryMax: 2,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond, FailuresToOpen: 100})
	c, err := NewClient(connectors.Config{Name: "acme", Type: Type, API: &api,
		ChangeCreation: &connectors.ChangeCreation{Environments: []string{"production"}, Type: "normal"}}, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func change(number string, updated time.Time) map[string]any {
	return map[string]any{
		"number": pair(number), "short_description": pair("release " + number), "type": pair("normal"),
		"state": map[string]any{"display_value": "Scheduled", "value": "-2"}, "approval": pair("approved"),
		"sys_updated_on": map[string]any{"display_value": itsmfake.SNTime(updated), "value": itsmfake.SNTime(updated)},
		"sys_class_name": map[string]any{"display_value": "Change Request", "value": "change_request"},
	}
}

func TestGetRecord(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	fake.PutSN("change_request", change("CHG0000101", at))
	c := newClient(t, fake, nil)
	ctx := context.Background()

	rec, err := c.ReadChange(ctx, "CHG0000101")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Type != "change_request" || rec.Key != "CHG0000101" || !rec.UpdatedAt.Equal(at) {
		t.Errorf("record %+v", rec)
	}
	calls := fake.Calls("/api/now/table/change_request")
	if len(calls) != 1 || !strings.Contains(calls[0].Query, "sysparm_display_value=all") || calls[0].User != testUser {
		t.Errorf("calls %+v", calls)
	}
	_, err = c.ReadChange(ctx, "CHG0009999")
	if !errors.Is(err, connectors.ErrNotFound) {
		t.Errorf("absent change: %v", err)
	}
}

// TestListUpdatedPages: every record of a table updated since the
// watermark, oldest first, across pages of sysparm_limit.
func TestListUpdatedPages(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < pageSize+30; i++ {
		fake.PutSN("change_request", change(fmt.Sprintf("CHG%07d", i), base.Add(time.Duration(i)*time.Minute)))
	}
	c := newClient(t, fake, nil)
	var got []connectors.Record
	since := base.Add(10 * time.Minute)
	if err := c.listMerged(context.Background(), since, func(r connectors.Record) error { got = append(got, r); return nil }, TableChange); err != nil {
		t.Fatal(err)
	}
	if len(got) != pageSize+20 {
		t.Fatalf("got %d records, want %d", len(got), pageSize+20)
	}
	for i := 1; i < len(got); i++ {
		if got[i].UpdatedAt.Before(got[i-1].UpdatedAt) {
			t.Fatalf("not oldest first at %d", i)
		}
	}
	// The second page is asked from the newest update the first read
	// (00:10 + 99 minutes), not by an offset into the first listing; its
	// X-Total-Count says no row follows it, which ends the table.
	calls := fake.Calls("/api/now/table/change_request")
	if len(calls) != 2 || !strings.Contains(calls[0].Query, "sys_updated_on>=2026-12-01 00:10:00^ORDERBYsys_updated_on^ORDERBYsys_id") ||
		!strings.Contains(calls[1].Query, "sys_updated_on>=2026-12-01 01:49:00^") || !strings.Contains(calls[1].Query, "sysparm_offset=0") {
		t.Errorf("calls %+v", calls)
	}
}

// TestListWhileRecordsMove: changes updated while a poll reads its pages
// move to the end of the listing; every other change is still read
// (with a plain offset, the one at each page's boundary was skipped, and
// the watermark passed it for good), and those that moved are read at
// their new update.
func TestListWhileRecordsMove(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const n = 3*pageSize + 50
	for i := range n {
		// Three changes a second: ties broken by sys_id.
		fake.PutSN("change_request", change(fmt.Sprintf("CHG%07d", i), base.Add(time.Duration(i/3)*time.Second)))
	}
	moved := 0
	fake.AfterEach(func(call itsmfake.Call) {
		if !strings.HasPrefix(call.Path, "/api/now/table/change_request") {
			return
		}
		// The oldest two changes read so far are updated, after each of
		// the first two pages (so the later pages read them again).
		for range min(2, 4-moved) {
			key := fmt.Sprintf("CHG%07d", moved)
			moved++
			fake.PutSN("change_request", change(key, base.Add(time.Hour+time.Duration(moved)*time.Second)))
		}
	})
	c := newClient(t, fake, nil)
	got := map[string]int{}
	if err := c.listMerged(context.Background(), base, func(r connectors.Record) error { got[r.Key]++; return nil }, TableChange); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if key := fmt.Sprintf("CHG%07d", i); got[key] == 0 {
			t.Errorf("%s never read", key)
		}
	}
	for i := range moved {
		if key := fmt.Sprintf("CHG%07d", i); got[key] != 2 {
			t.Errorf("%s read %d times, want 2: before and after it moved", key, got[key])
		}
	}
}

// TestListPastShortPages: ServiceNow leaves rows the integration user's
// ACLs hide out of a page after cutting it, so a page can come back short
// with more to follow: every readable incident is read, before the newer
// change of the other table.
func TestListPastShortPages(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const n = pageSize + 50
	for i := range n {
		fake.PutSN("incident", incident(fmt.Sprintf("INC%07d", i), base.Add(time.Duration(i)*time.Second)))
	}
	fake.PutSN("change_request", change("CHG0000001", base.Add(time.Hour)))
	hidden := map[string]bool{"INC0000003": true, "INC0000010": true, "INC0000042": true}
	fake.HideSN(func(table string, rec map[string]any) bool {
		number, _ := rec["number"].(map[string]any)
		return table == "incident" && hidden[fmt.Sprint(number["value"])]
	})
	c := newClient(t, fake, nil)
	var order []string
	if err := c.listMerged(context.Background(), base, func(r connectors.Record) error { order = append(order, r.Key); return nil }, TableIncident, TableChange); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, k := range order {
		got[k] = true
	}
	for i := range n {
		key := fmt.Sprintf("INC%07d", i)
		if !hidden[key] && !got[key] {
			t.Errorf("%s never read", key)
		}
	}
	if len(order) == 0 || order[len(order)-1] != "CHG0000001" {
		t.Errorf("the newer change is not read last: %v", order[max(0, len(order)-3):])
	}
}

// TestListPastHiddenPages: sysparm_limit applies before the ACLs, so a
// page whose every row the integration user may not read comes back
// empty while more follow. Two pages' worth of hidden incidents do not
// end the table: the readable ones after them are read, before the newer
// change of the other table, whether the instance says more follow by
// X-Total-Count or by its Link header alone.
func TestListPastHiddenPages(t *testing.T) {
	for _, tc := range []struct {
		name         string
		count, links bool
		hiddenPages  int
		calls        int // incident pages asked, at most
	}{
		{"X-Total-Count", true, true, 2, 6},
		{"Link header only", false, true, 2, 6},
		// Longer than one poll's pages: a user who may read a small part
		// of a busy table is not stuck before the run at every poll.
		{"a hidden run past one poll's pages", true, true, 5, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := itsmfake.New(testUser, testPW)
			defer fake.Close()
			fake.SNListHeaders(tc.count, tc.links)
			base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			n := (tc.hiddenPages+1)*pageSize + 50
			for i := range n {
				fake.PutSN("incident", incident(fmt.Sprintf("INC%07d", i), base.Add(time.Duration(i)*time.Second)))
			}
			fake.PutSN("change_request", change("CHG0000001", base.Add(time.Duration(n+10)*time.Second)))
			hidden := func(i int) bool { return i >= pageSize && i < (tc.hiddenPages+1)*pageSize }
			fake.HideSN(func(table string, rec map[string]any) bool {
				number, _ := rec["number"].(map[string]any)
				var i int
				_, _ = fmt.Sscanf(fmt.Sprint(number["value"]), "INC%07d", &i)
				return table == "incident" && hidden(i)
			})
			c := newClient(t, fake, nil)
			c.pages.read = 3 // the third case's hidden run is longer
			var order []string
			if err := c.listMerged(context.Background(), base, func(r connectors.Record) error { order = append(order, r.Key); return nil }, TableIncident, TableChange); err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, k := range order {
				got[k]++
			}
			for i := range n {
				key := fmt.Sprintf("INC%07d", i)
				if want := map[bool]int{true: 0, false: 1}[hidden(i)]; got[key] != want {
					t.Errorf("%s read %d times, want %d", key, got[key], want)
				}
			}
			if len(order) == 0 || order[len(order)-1] != "CHG0000001" {
				t.Errorf("the newer change is not read last: %v", order[max(0, len(order)-3):])
			}
			if calls := fake.Calls("/api/now/table/incident"); len(calls) > tc.calls {
				t.Errorf("%d incident pages asked for %d rows in pages of %d", len(calls), n, pageSize)
			}
		})
	}
}

// TestListStopsAtAnInstanceThatNeverEnds: an instance that answers every
// page empty while saying ever more rows follow is read no further than
// one poll's pages, and the poll fails saying so (it would otherwise
// read the same pages, from the same watermark, at every poll).
func TestListStopsAtAnInstanceThatNeverEnds(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("X-Total-Count", "100000000")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"result":[]}`))
	}))
	defer srv.Close()
	hc := apiclient.New(apiclient.Options{Instance: "acme", Timeout: time.Second, RetryMax: 1})
	c, err := NewClient(connectors.Config{Name: "acme", Type: Type, API: &connectors.API{URL: srv.URL, Username: testUser, Password: testPW}}, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if c.pages != (pageLimits{maxPages, maxHiddenPages}) {
		t.Fatalf("page limits %+v, want %d and %d", c.pages, maxPages, maxHiddenPages)
	}
	c.pages.hidden = 20
	err = c.listMerged(context.Background(), since, func(connectors.Record) error { t.Fatal("a record from nothing"); return nil }, TableIncident)
	if err == nil || !strings.Contains(err.Error(), "ServiceNow acme: incident: 20 pages of the records updated since 2026-12-01 00:00:00 showed none") {
		t.Errorf("error %v; want one naming the table and the pages read", err)
	}
	if calls != 20 {
		t.Errorf("%d pages asked, want one poll's 20 emptied by the ACLs", calls)
	}
}

// TestLinksNext: the Link header's rel="next" is found whatever the URLs
// hold and however the links are spaced.
func TestLinksNext(t *testing.T) {
	for _, tc := range []struct {
		h    string
		want bool
	}{
		{`<https://i.service-now.com/api/now/table/incident?sysparm_offset=0&sysparm_limit=100>;rel="first",` +
			`<https://i.service-now.com/api/now/table/incident?sysparm_offset=100&sysparm_limit=100>;rel="next",` +
			`<https://i.service-now.com/api/now/table/incident?sysparm_offset=200&sysparm_limit=100>;rel="last"`, true},
		{`<https://i.service-now.com/api/now/table/incident?sysparm_offset=0&sysparm_limit=100>;rel="first",` +
			`<https://i.service-now.com/api/now/table/incident?sysparm_offset=0&sysparm_limit=100>;rel="last"`, false},
		{`<https://i/x?sysparm_query=numberINa,b;rel="next">;rel="prev", <https://i/y> ; rel=next`, true},
		{`<https://i/x?q=rel="next">; rel="prev" , <https://i/y>; rel="last"`, false},
		{`<https://i/x>; rel="prev next"`, true},
		{`<https://i/x`, false},
		{``, false},
	} {
		if got := linksNext(tc.h); got != tc.want {
			t.Errorf("linksNext(%q) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

// TestClientFaults: how each failure of the instance surfaces.
func TestClientFaults(t *testing.T) {
	tests := []struct {
		name    string
		fault   itsmfake.Fault
		wantErr string // "" = success after retries
	}{
		{"429 then ok", itsmfake.Fault{Status: 429, RetryAfter: "0"}, ""},
		{"500 twice then ok", itsmfake.Fault{Status: 500, Times: 2}, ""},
		{"500 always", itsmfake.Fault{Status: 500, Times: 10}, "ServiceNow acme: change_request CHG0000101: HTTP 500"},
		{"slow past timeout", itsmfake.Fault{Slow: time.Second, Times: 10}, "ServiceNow acme: change_request CHG0000101"},
		{"malformed JSON", itsmfake.Fault{Malformed: true}, "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := itsmfake.New(testUser, testPW)
			defer fake.Close()
			fake.PutSN("change_request", change("CHG0000101", time.Now()))
			c := newClient(t, fake, nil)
			tc.fault.Match = "CHG0000101"
			fake.Inject(tc.fault)
			_, err := c.ReadChange(context.Background(), "CHG0000101")
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), testPW) {
				t.Errorf("error carries the password: %v", err)
			}
		})
	}
}

// TestUnauthorizedNotRetried: a 401 is one call, and the error names the
// status, never the credential.
func TestUnauthorizedNotRetried(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	c := newClient(t, fake, func(a *connectors.API) { a.Password = "wrong-password-77" })
	_, err := c.ReadChange(context.Background(), "CHG0000101")
	var se *apiclient.StatusError
	if !errors.As(err, &se) || se.Status != 401 {
		t.Fatalf("want a 401 StatusError, got %v", err)
	}
	if strings.Contains(err.Error(), "wrong-password-77") {
		t.Errorf("error carries the password: %v", err)
	}
	if n := len(fake.Calls("/api/now/table")); n != 1 {
		t.Errorf("%d calls, want 1 (no retry on 401)", n)
	}
}

func TestOAuth(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	fake.AddOAuthClient("cid", "csecret-91")
	fake.PutSN("change_request", change("CHG0000101", time.Now()))
	c := newClient(t, fake, func(a *connectors.API) {
		a.Username, a.Password, a.ClientID, a.ClientSecret = "", "", "cid", "csecret-91"
	})
	for i := 0; i < 2; i++ {
		if _, err := c.ReadChange(context.Background(), "CHG0000101"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(fake.Calls("/oauth_token.do")); n != 1 {
		t.Errorf("%d token requests, want 1 (cached)", n)
	}
	if calls := fake.Calls("/api/now/table"); calls[0].User != "bearer" {
		t.Errorf("table call not with the bearer token: %+v", calls[0])
	}
}

// TestEnrich: a webhook's bare sys_id references get display values (one
// call per referenced record, then cached), and a change gets its
// approvals from sysapproval_approver.
func TestEnrich(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	svc := fake.PutSN("cmdb_ci", map[string]any{"name": "checkout-api"})
	grp := fake.PutSN("sys_user_group", map[string]any{"name": "Checkout"})
	dana := fake.PutSN("sys_user", map[string]any{"name": "Dana Ops", "user_name": "dana.ops"})
	chg := fake.PutSN("change_request", change("CHG0000200", time.Now()))
	fake.PutSN("sysapproval_approver", map[string]any{"sysapproval": ref("CHG0000200", chg), "approver": ref("Dana Ops", dana),
		"state": pair("approved"), "sys_updated_on": pair("2026-12-01 09:30:00"), "comments": pair("fine")})
	fake.PutSN("sysapproval_approver", map[string]any{"sysapproval": ref("CHG0000200", chg), "approver": ref("Dana Ops", dana),
		"state": pair("not requested")})
	c := newClient(t, fake, nil)
	body := fmt.Sprintf(`{"result":{"number":"CHG0000200","sys_id":%q,"sys_class_name":"change_request","cmdb_ci":%q,`+
		`"business_service":{"link":"x","value":%q},"assignment_group":%q,"short_description":"x"}}`, chg, svc, svc, grp)
	for i := 0; i < 2; i++ {
		out, err := c.Enrich(context.Background(), TableChange, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		r := gjson.GetBytes(out, "result")
		if r.Get("cmdb_ci.display_value").String() != "checkout-api" || r.Get("business_service.display_value").String() != "checkout-api" ||
			r.Get("assignment_group.display_value").String() != "Checkout" || r.Get("cmdb_ci.value").String() != svc {
			t.Fatalf("references not completed: %s", out)
		}
		var apps []Approval
		if err := json.Unmarshal([]byte(r.Get(ApprovalsMember).Raw), &apps); err != nil {
			t.Fatal(err)
		}
		if len(apps) != 1 || apps[0].Approver != "dana.ops" || apps[0].State != "approved" || apps[0].At != "2026-12-01 09:30:00" {
			t.Errorf("approvals %+v", apps)
		}
	}
	if n := len(fake.Calls("/api/now/table/cmdb_ci/")); n != 1 {
		t.Errorf("%d calls for the service's name, want 1 (cached)", n)
	}
	// Records other than changes and incidents pass unchanged.
	out, err := c.Enrich(context.Background(), "problem", []byte(`{"number":"PRB1"}`))
	if err != nil || string(out) != `{"number":"PRB1"}` {
		t.Errorf("problem: %s %v", out, err)
	}
}

func TestCreateChange(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	c := newClient(t, fake, nil)
	n := connectors.NewChange{ReleaseID: "rel-1", Service: "payments-api", Environment: "production", Version: "2.0.0",
		Commit: "9fceb02", RunURL: "https://ci.example.com/runs/7001"}
	key, err := c.CreateChange(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls("/api/sn_chg_rest/change/normal")
	if len(calls) != 1 || !strings.Contains(calls[0].Body, "2.0.0") || !strings.Contains(calls[0].Body, "9fceb02") || !strings.Contains(calls[0].Body, "runs/7001") {
		t.Fatalf("calls %+v", calls)
	}
	found, err := c.FindCreated(context.Background(), "rel-1")
	if err != nil || found != key {
		t.Errorf("FindCreated = %q, %v; want %q", found, err, key)
	}
	if _, err := c.FindCreated(context.Background(), "rel-2"); !errors.Is(err, connectors.ErrNotFound) {
		t.Errorf("FindCreated of another release: %v", err)
	}
	if err := c.AddWorkNote(context.Background(), key, "deployment started"); err != nil {
		t.Fatal(err)
	}
}

// TestCreateStandardChange: a standard change from a template named in the
// configuration by name (looked up once) or by sys_id.
func TestCreateStandardChange(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	id := fake.PutSN("std_change_record_producer", map[string]any{"name": "Restart web tier", "active": "true"})
	c := newClient(t, fake, nil)
	c.creation = &connectors.ChangeCreation{Environments: []string{"production"}, Type: "standard", Template: "Restart web tier"}
	for i := 0; i < 2; i++ {
		if _, err := c.CreateChange(context.Background(), connectors.NewChange{ReleaseID: fmt.Sprint("rel-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(fake.Calls("/api/sn_chg_rest/change/standard/" + id)); n != 2 {
		t.Errorf("%d creations on the template's sys_id, want 2", n)
	}
	if n := len(fake.Calls("std_change_record_producer")); n != 1 {
		t.Errorf("%d template lookups, want 1 (cached)", n)
	}
	c.creation.Template = "No such template"
	if _, err := c.CreateChange(context.Background(), connectors.NewChange{ReleaseID: "rel-x"}); err == nil || !strings.Contains(err.Error(), "no active template") {
		t.Errorf("unknown template: %v", err)
	}
}

// TestCircuitOpensAndCloses: an instance failing call after call opens
// the circuit (calls then fail at once, naming it, without reaching the
// instance); once it is back, the trial call closes it.
func TestCircuitOpensAndCloses(t *testing.T) {
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	fake.PutSN("change_request", change("CHG0000101", time.Now()))
	hc := apiclient.New(apiclient.Options{Instance: "acme", Timeout: 300 * time.Millisecond, RetryMax: -1,
		FailuresToOpen: 3, OpenFor: 200 * time.Millisecond})
	api := connectors.API{URL: fake.URL, Username: testUser, Password: testPW}
	c, err := NewClient(connectors.Config{Name: "acme", Type: Type, API: &api}, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fake.Inject(itsmfake.Fault{Match: "CHG0000101", Status: 502, Times: 3})
	for i := 0; i < 3; i++ {
		if _, err := c.ReadChange(ctx, "CHG0000101"); err == nil || !strings.Contains(err.Error(), "HTTP 502") {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if c.Circuit() != apiclient.CircuitOpen {
		t.Fatalf("circuit %s after 3 failures", c.Circuit())
	}
	before := len(fake.Calls("CHG0000101"))
	_, err = c.ReadChange(ctx, "CHG0000101")
	if !errors.Is(err, apiclient.ErrCircuitOpen) || !strings.Contains(err.Error(), "ServiceNow acme") {
		t.Errorf("open circuit: %v", err)
	}
	if len(fake.Calls("CHG0000101")) != before {
		t.Error("an open circuit reached the instance")
	}
	time.Sleep(250 * time.Millisecond)
	if _, err := c.ReadChange(ctx, "CHG0000101"); err != nil {
		t.Fatalf("trial call: %v", err)
	}
	if c.Circuit() != apiclient.CircuitClosed {
		t.Errorf("circuit %s after a good trial", c.Circuit())
	}
}

// TestHasWorkNote: the outbox's look before writing a note again finds it
// in the change's journal by its exact text, and nothing else.
func TestHasWorkNote(t *testing.T) {
	fake := healthyInstance()
	defer fake.Close()
	c := newClient(t, fake, nil)
	ctx := context.Background()
	// The actor is the pipeline's: its [code] tags would make the journal
	// render HTML; they are written as text and the note is still found.
	note := "tollgate: deployment of payments-api 2.0.0 to production started\nRun: https://ci/runs/1?a=b\nActor: ci [CODE]<img src=x onerror=alert(1)>[/code]"
	if ok, err := c.HasWorkNote(ctx, "CHG0000101", note); err != nil || ok {
		t.Fatalf("before the note: %v, %v", ok, err)
	}
	if err := c.AddWorkNote(ctx, "CHG0000101", note); err != nil {
		t.Fatal(err)
	}
	patches := 0
	for _, call := range fake.Calls("/api/now/table/change_request") {
		if call.Method == "PATCH" {
			patches++
		}
		if call.Method == "PATCH" && (strings.Contains(strings.ToLower(call.Body), "[code]") || !strings.Contains(call.Body, "(CODE)")) {
			t.Errorf("work note written with a live [code] tag: %s", call.Body)
		}
	}
	if patches != 1 {
		t.Fatalf("%d notes written, want 1", patches)
	}
	if ok, err := c.HasWorkNote(ctx, "CHG0000101", note); err != nil || !ok {
		t.Errorf("after the note: %v, %v", ok, err)
	}
	if ok, err := c.HasWorkNote(ctx, "CHG0000101", "tollgate: another note"); err != nil || ok {
		t.Errorf("another note: %v, %v", ok, err)
	}
	if _, err := c.HasWorkNote(ctx, "CHG0009999", note); !errors.Is(err, connectors.ErrNotFound) {
		t.Errorf("unknown change: %v", err)
	}
}

func incident(number string, updated time.Time) map[string]any {
	return map[string]any{
		"number": pair(number), "short_description": pair("outage " + number), "priority": pair("1"), "state": pair("2"),
		"sys_updated_on": map[string]any{"display_value": itsmfake.SNTime(updated), "value": itsmfake.SNTime(updated)},
		"sys_class_name": map[string]any{"display_value": "Incident", "value": "incident"},
	}
}

// TestPollMergesTables: the poll hands on changes and incidents oldest
// first across the two tables, so that whatever stops it part-way (the
// store failing, one poll's pages read) never leaves a record older than
// the newest one handed on unread: the poller's watermark would pass it.
func TestPollMergesTables(t *testing.T) {
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	t.Run("order, and a failure part-way", func(t *testing.T) {
		fake := itsmfake.New(testUser, testPW)
		defer fake.Close()
		for i := 0; i < 5; i++ {
			fake.PutSN("change_request", change(fmt.Sprintf("CHG%07d", i), base.Add(time.Duration(2*i)*time.Minute)))
			fake.PutSN("incident", incident(fmt.Sprintf("INC%07d", i), base.Add(time.Duration(2*i+1)*time.Minute)))
		}
		c := newClient(t, fake, nil)
		var got []string
		if err := c.Poll(context.Background(), base, func(r connectors.Record) error { got = append(got, r.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		want := "CHG0000000 INC0000000 CHG0000001 INC0000001 CHG0000002 INC0000002 CHG0000003 INC0000003 CHG0000004 INC0000004"
		if strings.Join(got, " ") != want {
			t.Errorf("order %v, want %s", got, want)
		}
		got = nil
		stop := errors.New("database away")
		err := c.Poll(context.Background(), base, func(r connectors.Record) error {
			if len(got) == 3 {
				return stop
			}
			got = append(got, r.Key)
			return nil
		})
		if !errors.Is(err, stop) || strings.Join(got, " ") != "CHG0000000 INC0000000 CHG0000001" {
			t.Errorf("a store failing at the fourth record: %v after %v, want the three oldest of both tables", err, got)
		}
	})
	t.Run("a table with more than one poll reads", func(t *testing.T) {
		fake := itsmfake.New(testUser, testPW)
		defer fake.Close()
		n := maxPages*pageSize + 10
		for i := 0; i < n; i++ { // one a second: the first poll reads up to 5,000
			fake.PutSN("change_request", change(fmt.Sprintf("CHG%07d", i), base.Add(time.Duration(i)*time.Second)))
		}
		fake.PutSN("incident", incident("INC0000001", base.Add(30*time.Second)))
		fake.PutSN("incident", incident("INC0000002", base.Add(2*time.Hour)))
		c := newClient(t, fake, nil)
		seen := map[string]bool{}
		poll := func(since time.Time) (newest time.Time) {
			t.Helper()
			if err := c.Poll(context.Background(), since, func(r connectors.Record) error {
				seen[r.Key] = true
				if r.UpdatedAt.After(newest) {
					newest = r.UpdatedAt
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			return newest
		}
		first := poll(base)
		// Each page after the first reads the instant it is asked from
		// again (package rebase): 50 pages end at the 4,951st change.
		if last := base.Add(time.Duration(maxPages*(pageSize-1)) * time.Second); !first.Equal(last) || seen["INC0000002"] || !seen["INC0000001"] {
			t.Errorf("first poll: newest %v (want the last change read, %v); later incident handed on %v, earlier %v",
				first, last, seen["INC0000002"], seen["INC0000001"])
		}
		poll(first)
		if len(seen) != n+2 {
			t.Errorf("%d records handed on over two polls, want %d", len(seen), n+2)
		}
	})
}
