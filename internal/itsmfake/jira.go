package itsmfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// JiraTime formats t as Jira writes date-times.
func JiraTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000-0700") }

type jiraData struct {
	issues    map[string]map[string]any
	approvals map[string][]map[string]any
	comments  map[string][]string
	created   []string
	next      map[string]int
	// zone is the API user's profile time zone (/myself), in which JQL
	// dates are read; "" is UTC.
	zone string
}

func (d *jiraData) init() {
	d.issues = map[string]map[string]any{}
	d.approvals = map[string][]map[string]any{}
	d.comments = map[string][]string{}
	d.next = map[string]int{}
}

// SetJiraUserZone sets the API user's profile time zone (an IANA name):
// /myself answers it and JQL dates are read in it, as Jira does.
func (s *Server) SetJiraUserZone(zone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jira.zone = zone
}

// PutJiraIssue upserts an issue in REST API v2 shape ({key, fields}).
// fields.updated and fields.project are filled when missing.
func (s *Server) PutJiraIssue(issue map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jira.put(issue)
}

func (d *jiraData) put(issue map[string]any) {
	key, _ := issue["key"].(string)
	fields, _ := issue["fields"].(map[string]any)
	if fields == nil {
		fields = map[string]any{}
		issue["fields"] = fields
	}
	if _, ok := fields["updated"]; !ok {
		fields["updated"] = JiraTime(time.Now())
	}
	if _, ok := fields["project"]; !ok {
		proj, _, _ := strings.Cut(key, "-")
		fields["project"] = map[string]any{"key": proj}
	}
	if _, ok := issue["id"]; !ok {
		issue["id"] = strconv.Itoa(10000 + len(d.issues))
	}
	d.issues[key] = issue
}

// PutJSMApprovals sets the JSM approvals of an issue
// (/rest/servicedeskapi/request/{key}/approval values).
func (s *Server) PutJSMApprovals(key string, approvals []map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jira.approvals[key] = approvals
}

// JiraCreated lists the issue keys created through the API.
func (s *Server) JiraCreated() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.jira.created...)
}

// JiraComments returns the comments added to an issue.
func (s *Server) JiraComments(key string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.jira.comments[key]...)
}

var (
	issuePath    = regexp.MustCompile(`^/rest/api/(?:2|3|latest)/issue/([^/]+)$`)
	commentPath  = regexp.MustCompile(`^/rest/api/(?:2|3|latest)/issue/([^/]+)/comment$`)
	approvalPath = regexp.MustCompile(`^/rest/servicedeskapi/request/([^/]+)/approval$`)
	projectsIn   = regexp.MustCompile(`(?i)project\s+in\s*\(([^)]*)\)`)
	updatedGE    = regexp.MustCompile(`(?i)updated\s*>=\s*"([^"]+)"`)
	labelEq      = regexp.MustCompile(`(?i)labels\s*=\s*"?([A-Za-z0-9_.:-]+)"?`)
)

var jiraNotFound = map[string]any{"errorMessages": []string{"Issue does not exist or you do not have permission to see it."}, "errors": map[string]any{}}

func (s *Server) jiraServe(w http.ResponseWriter, r *http.Request, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := r.URL.Path
	switch {
	case (p == "/rest/api/2/myself" || p == "/rest/api/3/myself") && r.Method == http.MethodGet:
		zone := s.jira.zone
		if zone == "" {
			zone = "UTC"
		}
		writeJSON(w, 200, map[string]any{"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "tollgate", "timeZone": zone})
	case (p == "/rest/api/2/search" || p == "/rest/api/3/search" || p == "/rest/api/latest/search") && r.Method == http.MethodGet:
		q := r.URL.Query()
		s.jiraSearch(w, q.Get("jql"), q.Get("startAt"), q.Get("maxResults"))
	case (p == "/rest/api/2/search/jql" || p == "/rest/api/3/search/jql") && r.Method == http.MethodGet:
		// Jira Cloud's enhanced search: the next page by token (here the
		// next offset).
		q := r.URL.Query()
		s.jiraSearchPage(w, q.Get("jql"), q.Get("nextPageToken"), q.Get("maxResults"), true)
	case (p == "/rest/api/2/search" || p == "/rest/api/3/search") && r.Method == http.MethodPost:
		var req struct {
			JQL        string `json:"jql"`
			StartAt    int    `json:"startAt"`
			MaxResults int    `json:"maxResults"`
		}
		_ = json.Unmarshal([]byte(body), &req)
		s.jiraSearch(w, req.JQL, strconv.Itoa(req.StartAt), strconv.Itoa(req.MaxResults))
	case (p == "/rest/api/2/issue" || p == "/rest/api/3/issue") && r.Method == http.MethodPost:
		var req struct {
			Fields map[string]any `json:"fields"`
		}
		if json.Unmarshal([]byte(body), &req) != nil || req.Fields == nil {
			writeJSON(w, 400, map[string]any{"errorMessages": []string{"Invalid request payload."}, "errors": map[string]any{}})
			return
		}
		proj, _ := req.Fields["project"].(map[string]any)
		pk, _ := proj["key"].(string)
		if pk == "" {
			writeJSON(w, 400, map[string]any{"errorMessages": []string{}, "errors": map[string]string{"project": "project is required"}})
			return
		}
		s.jira.next[pk]++
		key := fmt.Sprintf("%s-%d", pk, 1000+s.jira.next[pk])
		req.Fields["status"] = map[string]any{"name": "Open"}
		s.jira.put(map[string]any{"key": key, "fields": req.Fields})
		s.jira.created = append(s.jira.created, key)
		writeJSON(w, 201, map[string]any{"id": s.jira.issues[key]["id"], "key": key, "self": "/rest/api/2/issue/" + key})
	case p == "/rest/servicedeskapi/request" && r.Method == http.MethodPost:
		var req struct {
			ServiceDeskID      string         `json:"serviceDeskId"`
			RequestTypeID      string         `json:"requestTypeId"`
			RequestFieldValues map[string]any `json:"requestFieldValues"`
		}
		if json.Unmarshal([]byte(body), &req) != nil || req.ServiceDeskID == "" || req.RequestTypeID == "" {
			writeJSON(w, 400, map[string]any{"errorMessage": "serviceDeskId and requestTypeId are required."})
			return
		}
		s.jira.next["OPS"]++
		key := fmt.Sprintf("OPS-%d", 1000+s.jira.next["OPS"])
		fields := map[string]any{"issuetype": map[string]any{"name": "Change"}, "status": map[string]any{"name": "Waiting for support"}}
		for k, v := range req.RequestFieldValues {
			fields[k] = v
		}
		s.jira.put(map[string]any{"key": key, "fields": fields})
		s.jira.created = append(s.jira.created, key)
		writeJSON(w, 201, map[string]any{"issueKey": key, "serviceDeskId": req.ServiceDeskID, "requestTypeId": req.RequestTypeID})
	case commentPath.MatchString(p) && r.Method == http.MethodPost:
		key := commentPath.FindStringSubmatch(p)[1]
		if _, ok := s.jira.issues[key]; !ok {
			writeJSON(w, 404, jiraNotFound)
			return
		}
		var c struct {
			Body string `json:"body"`
		}
		_ = json.Unmarshal([]byte(body), &c)
		s.jira.comments[key] = append(s.jira.comments[key], c.Body)
		writeJSON(w, 201, map[string]any{"id": "10000", "body": c.Body})
	case commentPath.MatchString(p) && r.Method == http.MethodGet:
		key := commentPath.FindStringSubmatch(p)[1]
		if _, ok := s.jira.issues[key]; !ok {
			writeJSON(w, 404, jiraNotFound)
			return
		}
		list := []map[string]any{}
		for i, b := range s.jira.comments[key] {
			list = append(list, map[string]any{"id": strconv.Itoa(10000 + i), "body": b})
		}
		if r.URL.Query().Get("orderBy") == "-created" {
			slices.Reverse(list)
		}
		writeJSON(w, 200, map[string]any{"startAt": 0, "maxResults": len(list), "total": len(list), "comments": list})
	case issuePath.MatchString(p) && r.Method == http.MethodGet:
		key := issuePath.FindStringSubmatch(p)[1]
		is, ok := s.jira.issues[key]
		if !ok {
			writeJSON(w, 404, jiraNotFound)
			return
		}
		writeJSON(w, 200, is)
	case approvalPath.MatchString(p) && r.Method == http.MethodGet:
		key := approvalPath.FindStringSubmatch(p)[1]
		if _, ok := s.jira.issues[key]; !ok {
			writeJSON(w, 404, map[string]any{"errorMessage": "The request could not be found."})
			return
		}
		vals := s.jira.approvals[key]
		if vals == nil {
			vals = []map[string]any{}
		}
		writeJSON(w, 200, map[string]any{"size": len(vals), "start": 0, "limit": 50, "isLastPage": true, "values": vals})
	default:
		writeJSON(w, 404, map[string]any{"errorMessages": []string{"No resource at " + r.Method + " " + p}})
	}
}

func (s *Server) jiraSearch(w http.ResponseWriter, jql, startAt, maxResults string) {
	s.jiraSearchPage(w, jql, startAt, maxResults, false)
}

func (s *Server) jiraSearchPage(w http.ResponseWriter, jql, startAt, maxResults string, enhanced bool) {
	var projects []string
	if m := projectsIn.FindStringSubmatch(jql); m != nil {
		for _, p := range strings.Split(m[1], ",") {
			projects = append(projects, strings.Trim(strings.TrimSpace(p), `"`))
		}
	}
	var since time.Time
	if m := updatedGE.FindStringSubmatch(jql); m != nil {
		loc := time.UTC
		if s.jira.zone != "" {
			if l, err := time.LoadLocation(s.jira.zone); err == nil {
				loc = l
			}
		}
		since, _ = time.ParseInLocation("2006/01/02 15:04", m[1], loc)
	}
	label := ""
	if m := labelEq.FindStringSubmatch(jql); m != nil {
		label = m[1]
	}
	var hits []map[string]any
	for key, is := range s.jira.issues {
		f := is["fields"].(map[string]any)
		proj, _, _ := strings.Cut(key, "-")
		if len(projects) > 0 && !contains(projects, proj) {
			continue
		}
		up, _ := time.Parse("2006-01-02T15:04:05.000-0700", fmt.Sprint(f["updated"]))
		if !since.IsZero() && up.Before(since) {
			continue
		}
		if label != "" {
			ls, _ := f["labels"].([]any)
			found := false
			for _, l := range ls {
				found = found || fmt.Sprint(l) == label
			}
			if !found {
				continue
			}
		}
		hits = append(hits, is)
	}
	sort.Slice(hits, func(i, j int) bool {
		a := fmt.Sprint(hits[i]["fields"].(map[string]any)["updated"])
		b := fmt.Sprint(hits[j]["fields"].(map[string]any)["updated"])
		if a != b {
			return a < b
		}
		return fmt.Sprint(hits[i]["key"]) < fmt.Sprint(hits[j]["key"])
	})
	start, _ := strconv.Atoi(startAt)
	max, _ := strconv.Atoi(maxResults)
	if max <= 0 {
		max = 50
	}
	page := []map[string]any{}
	for i := start; i < len(hits) && i < start+max; i++ {
		page = append(page, hits[i])
	}
	if enhanced {
		out := map[string]any{"issues": page, "isLast": start+max >= len(hits)}
		if start+max < len(hits) {
			out["nextPageToken"] = strconv.Itoa(start + max)
		}
		writeJSON(w, 200, out)
		return
	}
	writeJSON(w, 200, map[string]any{"startAt": start, "maxResults": max, "total": len(hits), "issues": page})
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}
