package itsmfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SNTime formats t as ServiceNow writes date-times.
func SNTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

type snData struct {
	tables  map[string][]map[string]any
	seq     int
	created []string
	// hidden, when set, says which rows the caller's ACLs hide: like
	// ServiceNow's, they are left out after the page is cut, so a page
	// can come back short with more to follow.
	hidden func(table string, rec map[string]any) bool
	// noCount and noLinks leave X-Total-Count and Link out of lists.
	noCount, noLinks bool
}

func (d *snData) init() { d.tables = map[string][]map[string]any{}; d.seq = 3000000 }

func newSysID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// snValue is a field's value in any shape.
func snValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case map[string]any:
		return snValue(x["value"])
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// PutSN upserts a ServiceNow record (by sys_id, else number) in table,
// as given: plain values, {link,value} or {display_value,value} pairs.
// Missing sys_id, sys_class_name and sys_updated_on are filled. It returns
// the record's sys_id.
func (s *Server) PutSN(table string, rec map[string]any) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sn.put(table, rec)
}

func (d *snData) put(table string, rec map[string]any) string {
	cp := map[string]any{}
	for k, v := range rec {
		cp[k] = v
	}
	if snValue(cp["sys_id"]) == "" {
		cp["sys_id"] = newSysID()
	}
	if _, ok := cp["sys_class_name"]; !ok {
		cp["sys_class_name"] = map[string]any{"display_value": table, "value": table}
	}
	if _, ok := cp["sys_updated_on"]; !ok {
		cp["sys_updated_on"] = SNTime(time.Now())
	}
	list := d.tables[table]
	for i, r := range list {
		if snValue(r["sys_id"]) == snValue(cp["sys_id"]) || (snValue(cp["number"]) != "" && snValue(r["number"]) == snValue(cp["number"])) {
			cp["sys_id"] = r["sys_id"]
			list[i] = cp
			return snValue(cp["sys_id"])
		}
	}
	d.tables[table] = append(list, cp)
	return snValue(cp["sys_id"])
}

// SNRecords returns the records of table.
func (s *Server) SNRecords(table string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, r := range s.sn.tables[table] {
		cp := make(map[string]any, len(r))
		for k, v := range r {
			cp[k] = v
		}
		out = append(out, cp)
	}
	return out
}

// SNCreated lists the change numbers created through the Change
// Management API.
func (s *Server) SNCreated() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sn.created...)
}

func (d *snData) bySysID(id string) map[string]any {
	for _, list := range d.tables {
		for _, r := range list {
			if snValue(r["sys_id"]) == id {
				return r
			}
		}
	}
	return nil
}

// field reads a possibly dot-walked field ("sysapproval.number").
func (d *snData) field(r map[string]any, name string) any {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		v, ok := r[p]
		if !ok {
			return nil
		}
		if i == len(parts)-1 {
			return v
		}
		r = d.bySysID(snValue(v))
		if r == nil {
			return nil
		}
	}
	return nil
}

var (
	condRe = regexp.MustCompile(`^([A-Za-z0-9_.]+)(>=|<=|!=|=|>|<)(.*)$`)
	// wordRe: the operators spelled in capitals after a lower-case field
	// name (scriptLIKEfoo, collectionINa,b).
	wordRe = regexp.MustCompile(`^([a-z0-9_.]+)(NOT LIKE|LIKE|STARTSWITH|ENDSWITH|NOT IN|IN)(.*)$`)
)

// query filters table by an encoded query: conditions joined by ^ (and)
// and ^OR (or, binding tighter: a^b^ORc is a and (b or c)), with =, !=,
// <, <=, >, >=, LIKE, NOT LIKE, STARTSWITH, ENDSWITH, IN and NOT IN
// (LIKE and the like without regard to case, as the instance compares),
// ^^ for a ^ in a value, and ORDERBY (one or more). A condition it cannot read is
// ignored.
func (d *snData) query(table, q string) []map[string]any {
	var out []map[string]any
	var order []string
	var groups [][][3]string // and of ors
	const caret = "\x00caret\x00"
	for _, c := range strings.Split(strings.ReplaceAll(q, "^^", caret), "^") {
		c = strings.ReplaceAll(c, caret, "^")
		or := false
		if strings.HasPrefix(c, "OR") && !strings.HasPrefix(c, "ORDERBY") {
			c, or = strings.TrimPrefix(c, "OR"), true
		}
		switch {
		case c == "":
		case strings.HasPrefix(c, "ORDERBY"):
			order = append(order, strings.TrimPrefix(c, "ORDERBY"))
		default:
			m := wordRe.FindStringSubmatch(c)
			if m == nil {
				m = condRe.FindStringSubmatch(c)
			}
			if m == nil {
				continue
			}
			cond := [3]string{m[1], m[2], m[3]}
			if or && len(groups) > 0 {
				groups[len(groups)-1] = append(groups[len(groups)-1], cond)
			} else {
				groups = append(groups, [][3]string{cond})
			}
		}
	}
	for _, r := range d.tables[table] {
		ok := true
		for _, g := range groups {
			hit := false
			for _, c := range g {
				hit = hit || d.holds(r, c)
			}
			ok = ok && hit
		}
		if ok {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		for _, f := range order {
			if a, b := snValue(out[i][f]), snValue(out[j][f]); a != b {
				return a < b
			}
		}
		return false
	})
	return out
}

// holds reports whether record r meets condition c (field, operator,
// value).
func (d *snData) holds(r map[string]any, c [3]string) bool {
	v := snValue(d.field(r, c[0]))
	lv, lc := strings.ToLower(v), strings.ToLower(c[2])
	in := func() bool {
		for _, x := range strings.Split(c[2], ",") {
			if v == strings.TrimSpace(x) {
				return true
			}
		}
		return false
	}
	switch c[1] {
	case "=":
		return v == c[2]
	case "!=":
		return v != c[2]
	case ">=":
		return v >= c[2]
	case "<=":
		return v <= c[2]
	case ">":
		return v > c[2]
	case "<":
		return v < c[2]
	case "LIKE":
		return strings.Contains(lv, lc)
	case "NOT LIKE":
		return !strings.Contains(lv, lc)
	case "STARTSWITH":
		return strings.HasPrefix(lv, lc)
	case "ENDSWITH":
		return strings.HasSuffix(lv, lc)
	case "IN":
		return in()
	case "NOT IN":
		return !in()
	}
	return true
}

// render is record r as the Table API answers it: only fields when given
// and, with sysparm_display_value=true, a {display_value,value} pair as
// its display value (other records as they were given).
func (d *snData) render(r map[string]any, fields, display string) map[string]any {
	show := func(v any) any {
		if m, ok := v.(map[string]any); ok && display == "true" {
			if dv, ok := m["display_value"]; ok {
				return dv
			}
		}
		return v
	}
	if fields == "" {
		if display != "true" {
			return r
		}
		out := make(map[string]any, len(r))
		for k, v := range r {
			out[k] = show(v)
		}
		return out
	}
	out := map[string]any{}
	for _, f := range strings.Split(fields, ",") {
		f = strings.TrimSpace(f)
		v := d.field(r, f)
		if v == nil {
			v = ""
		}
		out[f] = show(v)
	}
	return out
}

var (
	tablePath  = regexp.MustCompile(`^/api/now(?:/v\d+)?/table/([A-Za-z0-9_]+)(?:/([^/]+))?$`)
	chgPath    = regexp.MustCompile(`^/api/sn_chg_rest(?:/v\d+)?/change/(normal|standard)(?:/([^/]+))?$`)
	notFoundSN = map[string]any{"error": map[string]string{"message": "No Record found", "detail": "Record doesn't exist or ACL restricts the record retrieval"}, "status": "failure"}
)

func (s *Server) serviceNow(w http.ResponseWriter, r *http.Request, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := r.URL.Query()
	if m := tablePath.FindStringSubmatch(r.URL.Path); m != nil {
		table, id := m[1], m[2]
		switch {
		case r.Method == http.MethodGet && id == "":
			s.snList(w, r, table)
		case r.Method == http.MethodGet:
			rec := s.sn.bySysID(id)
			if rec == nil {
				writeJSON(w, 404, notFoundSN)
				return
			}
			writeJSON(w, 200, map[string]any{"result": s.sn.render(rec, q.Get("sysparm_fields"), q.Get("sysparm_display_value"))})
		case r.Method == http.MethodPatch && id != "":
			rec := s.sn.bySysID(id)
			if rec == nil {
				writeJSON(w, 404, notFoundSN)
				return
			}
			var data map[string]any
			if json.Unmarshal([]byte(body), &data) != nil {
				writeJSON(w, 400, map[string]any{"error": map[string]string{"message": "Exception while reading request"}})
				return
			}
			for k, v := range data {
				if k == "work_notes" {
					notes, _ := rec["work_notes_journal"].([]any)
					rec["work_notes_journal"] = append(notes, v)
					// As the instance keeps it: one sys_journal_field row per note.
					s.sn.put("sys_journal_field", map[string]any{"element_id": id, "element": "work_notes", "name": table,
						"value": v, "sys_created_on": SNTime(time.Now())})
					continue
				}
				rec[k] = v
			}
			rec["sys_updated_on"] = SNTime(time.Now())
			writeJSON(w, 200, map[string]any{"result": rec})
		default:
			writeJSON(w, 405, map[string]any{"error": map[string]string{"message": "Method not supported"}})
		}
		return
	}
	if m := chgPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodPost {
		var data map[string]any
		if json.Unmarshal([]byte(body), &data) != nil {
			writeJSON(w, 400, map[string]any{"error": map[string]string{"message": "Exception while reading request"}})
			return
		}
		s.sn.seq++
		num := fmt.Sprintf("CHG%07d", s.sn.seq)
		rec := map[string]any{"number": map[string]any{"display_value": num, "value": num}}
		for k, v := range data {
			rec[k] = map[string]any{"display_value": snValue(v), "value": snValue(v)}
		}
		typ := m[1]
		rec["type"] = map[string]any{"display_value": typ, "value": typ}
		rec["state"] = map[string]any{"display_value": "New", "value": "-5"}
		rec["approval"] = map[string]any{"display_value": "Not Yet Requested", "value": "not requested"}
		if typ == "standard" {
			rec["std_change_producer_version"] = map[string]any{"display_value": m[2], "value": m[2]}
			rec["approval"] = map[string]any{"display_value": "Approved", "value": "approved"}
		}
		rec["sys_updated_on"] = map[string]any{"display_value": SNTime(time.Now()), "value": SNTime(time.Now())}
		s.sn.put("change_request", rec)
		s.sn.created = append(s.sn.created, num)
		writeJSON(w, 200, map[string]any{"result": rec})
		return
	}
	writeJSON(w, 400, map[string]any{"error": map[string]string{"message": "Requested URI does not represent any resource"}})
}

// snList answers a Table API list as ServiceNow does: a page of
// sysparm_limit rows from sysparm_offset, less the rows the caller's
// ACLs hide (HideSN) — left out after the page is cut, so a page can come
// back short, or empty, with more to follow — with X-Total-Count, the
// rows the query lists (hidden ones among them; not with
// sysparm_no_count=true), and a Link header to the first, previous, next
// and last pages (not with sysparm_suppress_pagination_header=true).
func (s *Server) snList(w http.ResponseWriter, r *http.Request, table string) {
	q := r.URL.Query()
	recs := s.sn.query(table, q.Get("sysparm_query"))
	off, _ := strconv.Atoi(q.Get("sysparm_offset"))
	lim, _ := strconv.Atoi(q.Get("sysparm_limit"))
	if lim <= 0 {
		lim = 10000
	}
	off = max(off, 0)
	if q.Get("sysparm_no_count") != "true" && !s.sn.noCount {
		w.Header().Set("X-Total-Count", strconv.Itoa(len(recs)))
	}
	if q.Get("sysparm_suppress_pagination_header") != "true" && !s.sn.noLinks {
		w.Header().Set("Link", snLinks(r, off, lim, len(recs)))
	}
	page := []map[string]any{}
	for i := off; i < len(recs) && i < off+lim; i++ {
		if s.sn.hidden != nil && s.sn.hidden(table, recs[i]) {
			continue
		}
		page = append(page, s.sn.render(recs[i], q.Get("sysparm_fields"), q.Get("sysparm_display_value")))
	}
	writeJSON(w, 200, map[string]any{"result": page})
}

// snLinks is a list answer's Link header, in ServiceNow's form:
// <url>;rel="first",<url>;rel="prev",<url>;rel="next",<url>;rel="last".
func snLinks(r *http.Request, off, lim, total int) string {
	at := func(o int) string {
		q := r.URL.Query()
		q.Set("sysparm_offset", strconv.Itoa(o))
		q.Set("sysparm_limit", strconv.Itoa(lim))
		return "<http://" + r.Host + r.URL.Path + "?" + q.Encode() + ">"
	}
	last := max(0, (total-1)/lim*lim)
	links := []string{at(0) + `;rel="first"`}
	if off > 0 {
		links = append(links, at(max(0, off-lim))+`;rel="prev"`)
	}
	if off+lim < total {
		links = append(links, at(off+lim)+`;rel="next"`)
	}
	return strings.Join(append(links, at(last)+`;rel="last"`), ",")
}

// SNListHeaders chooses what Table API lists say of the listing: the
// X-Total-Count header (count) and the Link header (links), as an
// instance (or a proxy before it) may leave either out.
func (s *Server) SNListHeaders(count, links bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sn.noCount, s.sn.noLinks = !count, !links
}

func urlUnescape(s string) (string, error) { return url.QueryUnescape(s) }

func parseForm(body string) (map[string]string, error) {
	v, err := url.ParseQuery(body)
	out := map[string]string{}
	for k := range v {
		out[k] = v.Get(k)
	}
	return out, err
}

// HideSN has the rows hide says the caller's ACLs hide left out of Table
// API listings after paging, as ServiceNow does (a short page is not the
// last).
func (s *Server) HideSN(hide func(table string, rec map[string]any) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sn.hidden = hide
}
