// Command loadgen drives POST /api/v1/gate/check of a local tollgate and
// reports throughput and latency percentiles. It is the load half of
// scripts/load.sh; see docs/benchmarks.md for the method.
//
// Request bodies are built before the run from keys sampled out of the
// seeded database (scripts/seed): mostly a production release of a service
// linking one or two approved, scheduled changes of that service (the whole
// rule set runs and most answers are allow), some linking a change that is
// awaiting approval, rejected or not requested, and some linking a key no
// connector knows. Each body has a random version, so the release upsert
// both inserts and updates.
//
// Two modes:
//
//   - closed loop (-rate 0): -c workers each send the next request as soon
//     as the previous answer arrives, over keep-alive connections: the
//     saturation throughput and its latency;
//   - open loop (-rate R): requests are scheduled at a fixed rate R and
//     handed to -c workers; latency counts from the scheduled time, so a
//     stalled server is not hidden (no coordinated omission). A request
//     that finds every worker busy and the queue full is counted as missed.
//
// It only talks to a loopback address, runs for -warmup plus -d and stops
// by itself.
//
// The load generator shares the machine with the server and PostgreSQL, so
// its own cost is kept low: by default (-client raw) each worker holds one
// keep-alive connection and writes pre-built HTTP/1.1 requests, reading
// the status line, the headers and a Content-Length or chunked body (about half the
// CPU of net/http's client); -client std uses net/http.
//
// Usage:
//
//	loadgen -url http://127.0.0.1:8080 -token $CI_TOKEN -db postgres://… -c 64 -d 20s
package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/lib/pq" // the PostgreSQL driver, to sample keys
)

type config struct {
	URL, Token, DB    string
	Concurrency       int
	Duration, Warmup  time.Duration
	Rate              float64
	Missing, Other    float64
	Bodies            int
	Seed              uint64
	Label             string
	Timeout           time.Duration
	SampleGoodChanges int
	Client            string
	// Target is what is driven: gate (POST /api/v1/gate/check) or webhook
	// (signed vendor deliveries to /webhooks/{servicenow,jira,github}).
	Target          string
	Secret          string  // the connectors' webhook secret (webhook target)
	Dup, OutOfOrder float64 // webhook target: fractions resent as-is, and sent as an older version
	Keys            int     // webhook target: distinct record keys
	// Series, when > 0, prints latency per window of this length (by the
	// request's send time) after the run: whether the tail is spikes or
	// spread evenly.
	Series time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "tollgate base URL (loopback only)")
	flag.StringVar(&c.Token, "token", os.Getenv("TOLLGATE_LOAD_TOKEN"), "ci token (default $TOLLGATE_LOAD_TOKEN)")
	flag.StringVar(&c.DB, "db", os.Getenv("TOLLGATE_DATABASE_URL"), "the seeded database, to sample keys from (default $TOLLGATE_DATABASE_URL)")
	flag.IntVar(&c.Concurrency, "c", 64, "concurrent connections (workers)")
	flag.DurationVar(&c.Duration, "d", 20*time.Second, "measured duration")
	flag.DurationVar(&c.Warmup, "warmup", 3*time.Second, "unmeasured warm-up before the measured duration")
	flag.Float64Var(&c.Rate, "rate", 0, "requests per second (open loop); 0 = closed loop, as fast as answers come")
	flag.Float64Var(&c.Missing, "missing", 0.05, "fraction of requests linking an unknown change key")
	flag.Float64Var(&c.Other, "other", 0.10, "fraction of requests linking a change that is not approved")
	flag.IntVar(&c.Bodies, "bodies", 50_000, "distinct request bodies, built before the run")
	flag.Uint64Var(&c.Seed, "seed", 1, "random seed")
	flag.StringVar(&c.Label, "label", "", "label printed with the result")
	flag.DurationVar(&c.Timeout, "timeout", 10*time.Second, "per-request timeout (counted as an error)")
	flag.IntVar(&c.SampleGoodChanges, "sample", 20_000, "approved changes to sample")
	flag.StringVar(&c.Client, "client", "raw", "HTTP client: raw (lean HTTP/1.1 over one connection per worker) or std (net/http)")
	flag.StringVar(&c.Target, "target", "gate", "what to drive: gate (POST /api/v1/gate/check, bodies from -db) or webhook (signed ServiceNow, Jira and GitHub deliveries)")
	flag.StringVar(&c.Secret, "secret", os.Getenv("TOLLGATE_LOAD_WEBHOOK_SECRET"), "webhook secret of the servicenow, jira and github connectors (-target webhook)")
	flag.Float64Var(&c.Dup, "dup", 0.05, "webhook target: fraction of deliveries resent as-is (a duplicate)")
	flag.Float64Var(&c.OutOfOrder, "ooo", 0.05, "webhook target: fraction of deliveries carrying an older version of their record (out of order)")
	flag.IntVar(&c.Keys, "keys", 2000, "webhook target: distinct change and issue keys")
	flag.DurationVar(&c.Series, "series", 0, "print p50/p99/max per window of this length (by send time) to stderr; 0 = off")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func (c config) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://127.0.0.1:PORT", c.URL)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-url %q: only loopback addresses are allowed", c.URL)
	}
	switch {
	case c.Target != "gate" && c.Target != "webhook":
		return fmt.Errorf("-target must be gate or webhook, not %q", c.Target)
	case c.Target == "gate" && c.Token == "":
		return errors.New("-token is required (a ci token)")
	case c.Target == "gate" && c.DB == "":
		return errors.New("-db is required (the seeded database)")
	case c.Target == "webhook" && c.Secret == "":
		return errors.New("-secret is required (the connectors' webhook secret)")
	case c.Dup < 0 || c.OutOfOrder < 0 || c.Dup+c.OutOfOrder > 1:
		return errors.New("-dup and -ooo must be fractions summing to at most 1")
	case c.Keys < 1:
		return errors.New("-keys must be at least 1")
	case c.Concurrency < 1 || c.Concurrency > 1024:
		return fmt.Errorf("-c must be 1…1024, got %d", c.Concurrency)
	case c.Duration <= 0 || c.Duration > 10*time.Minute:
		return fmt.Errorf("-d must be in (0, 10m], got %s", c.Duration)
	case c.Warmup < 0 || c.Warmup > time.Minute:
		return fmt.Errorf("-warmup must be in [0, 1m], got %s", c.Warmup)
	case c.Rate < 0 || c.Rate > 100_000:
		return fmt.Errorf("-rate must be 0…100000, got %g", c.Rate)
	case c.Missing < 0 || c.Other < 0 || c.Missing+c.Other > 1:
		return fmt.Errorf("-missing and -other must be fractions summing to at most 1")
	case c.Bodies < 1 || c.Bodies > 1_000_000:
		return fmt.Errorf("-bodies must be 1…1000000, got %d", c.Bodies)
	}
	return nil
}

// sample is what the request bodies are built from.
type sample struct {
	good  map[string][]string // service → approved, scheduled change keys
	svcs  []string            // services with good changes
	other [][2]string         // (service, key) of changes not approved
	team  map[string]string   // service → team
}

func loadSample(ctx context.Context, dsn string, n int) (*sample, error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("open the seeded database: %w", err)
	}
	defer db.Close()
	s := &sample{good: map[string][]string{}, team: map[string]string{}}
	// Approved, scheduled, complete normal changes not approved by their
	// requester: the whole rule set runs and passes.
	rows, err := db.QueryContext(ctx, `SELECT key, doc -> 'services' ->> 0 FROM changes
		WHERE approval = 'approved' AND state = 'scheduled' AND type = 'normal'
		  AND (doc ->> 'has_risk_assessment')::boolean AND (doc ->> 'has_backout_plan')::boolean
		  AND doc ->> 'requested_by' <> doc -> 'approvals' -> 0 ->> 'approver'
		ORDER BY random() LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("sample approved changes: %w", err)
	}
	for rows.Next() {
		var key, svc string
		if err := rows.Scan(&key, &svc); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sample approved changes: %w", err)
		}
		if _, ok := s.good[svc]; !ok {
			s.svcs = append(s.svcs, svc)
		}
		s.good[svc] = append(s.good[svc], key)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if len(s.svcs) == 0 {
		return nil, errors.New("no approved, scheduled changes in the database: seed it with scripts/seed first")
	}
	slices.Sort(s.svcs)
	rows, err = db.QueryContext(ctx, `SELECT key, doc -> 'services' ->> 0 FROM changes
		WHERE approval <> 'approved' AND state <> 'closed' ORDER BY random() LIMIT 5000`)
	if err != nil {
		return nil, fmt.Errorf("sample other changes: %w", err)
	}
	for rows.Next() {
		var key, svc string
		if err := rows.Scan(&key, &svc); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sample other changes: %w", err)
		}
		s.other = append(s.other, [2]string{svc, key})
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	rows, err = db.QueryContext(ctx, `SELECT DISTINCT service, team FROM releases`)
	if err != nil {
		return nil, fmt.Errorf("sample teams: %w", err)
	}
	for rows.Next() {
		var svc, team string
		if err := rows.Scan(&svc, &team); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sample teams: %w", err)
		}
		s.team[svc] = team
	}
	return s, rows.Close()
}

// gateRequest is the body of POST /api/v1/gate/check.
type gateRequest struct {
	Service     string    `json:"service"`
	Environment string    `json:"environment"`
	Version     string    `json:"version"`
	Commit      string    `json:"commit,omitempty"`
	Team        string    `json:"team,omitempty"`
	Changes     []string  `json:"changes"`
	Actor       string    `json:"actor,omitempty"`
	Pipeline    *pipeline `json:"pipeline,omitempty"`
}

type pipeline struct {
	Provider string `json:"provider"`
	RunID    string `json:"run_id"`
	URL      string `json:"url,omitempty"`
}

func buildBodies(s *sample, c config) ([][]byte, error) {
	rng := rand.New(rand.NewPCG(c.Seed, 0x7011))
	bodies := make([][]byte, c.Bodies)
	for i := range bodies {
		svc := s.svcs[rng.IntN(len(s.svcs))]
		keys := s.good[svc]
		changes := []string{keys[rng.IntN(len(keys))]}
		switch p := rng.Float64(); {
		case p < c.Missing:
			changes = append(changes, fmt.Sprintf("CHG9%06d", rng.IntN(1_000_000)))
		case p < c.Missing+c.Other && len(s.other) > 0:
			o := s.other[rng.IntN(len(s.other))]
			svc, changes = o[0], []string{o[1]}
		case rng.IntN(4) == 0 && len(keys) > 1:
			if k := keys[rng.IntN(len(keys))]; k != changes[0] {
				changes = append(changes, k)
			}
		}
		run := rng.Uint32()
		b, err := json.Marshal(gateRequest{
			Service: svc, Environment: "production", Version: fmt.Sprintf("3.%d.%d", rng.IntN(1000), rng.IntN(20)),
			Commit: fmt.Sprintf("%040x", rng.Uint64()), Team: s.team[svc], Changes: changes, Actor: "ci-bot",
			Pipeline: &pipeline{Provider: "github", RunID: fmt.Sprint(run), URL: fmt.Sprintf("https://github.example.com/acme/%s/actions/runs/%d", svc, run)},
		})
		if err != nil {
			return nil, err
		}
		bodies[i] = b
	}
	return bodies, nil
}

// stats is one worker's measurements.
type stats struct {
	lat                 []time.Duration
	sent                []time.Time // with -series: each request's send (or due) time, beside lat
	errors, allow, wait int
	deny, other         int
	accepted, duplicate int // webhook target: 202s, and those the inbox knew already
	firstErr            string
}

// request is one HTTP request to send: a POST of body to path.
type request struct {
	path   string
	header [][2]string
	body   []byte
}

// sender sends a request over worker w's connection and returns the
// answer's body; a status outside 2xx is an error.
type sender func(w int, rq request) ([]byte, error)

func run(c config) error {
	if err := c.validate(); err != nil {
		return err
	}
	var gen func(w int) func() request
	switch c.Target {
	case "gate":
		t0 := time.Now()
		s, err := loadSample(context.Background(), c.DB, c.SampleGoodChanges)
		if err != nil {
			return err
		}
		bodies, err := buildBodies(s, c)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "loadgen: %d bodies over %d services built in %.1fs\n", len(bodies), len(s.svcs), time.Since(t0).Seconds())
		hdr := [][2]string{{"Authorization", "Bearer " + c.Token}, {"Content-Type", "application/json"}}
		gen = func(w int) func() request {
			i := w * len(bodies) / c.Concurrency
			return func() request {
				i++
				return request{path: "/api/v1/gate/check", header: hdr, body: bodies[i%len(bodies)]}
			}
		}
	case "webhook":
		wh, err := newWebhooks(c)
		if err != nil {
			return err
		}
		gen = wh.worker
	}
	var send sender
	switch c.Client {
	case "std":
		send = stdClient(c)
	case "raw":
		send = rawClient(c)
	default:
		return fmt.Errorf("-client must be raw or std, not %q", c.Client)
	}
	total, elapsed, missed, cpu := drive(c, gen, send)
	if c.Series > 0 {
		printSeries(os.Stderr, total, c.Series)
	}
	report(c, total, elapsed, missed, cpu)
	return nil
}

// classify counts one answer.
func classify(st *stats, out []byte, err error) {
	switch {
	case err != nil:
		st.errors++
		if st.firstErr == "" {
			st.firstErr = err.Error()
		}
	case bytes.Contains(out, []byte(`"decision":"allow"`)):
		st.allow++
	case bytes.Contains(out, []byte(`"decision":"wait"`)):
		st.wait++
	case bytes.Contains(out, []byte(`"decision":"deny"`)):
		st.deny++
	case bytes.Contains(out, []byte(`"event_id"`)):
		st.accepted++
		if bytes.Contains(out, []byte(`"duplicate":true`)) {
			st.duplicate++
		}
	default:
		st.other++
	}
}

// drive runs the load: a warm-up, then c.Duration measured, and stops.
// gen(w) returns worker w's source of requests.
//
// Closed loop (c.Rate == 0): each worker sends its next request when the
// answer arrives; latency is the request's own time.
//
// Open loop (c.Rate > 0): request n is due at start + n/rate whatever the
// answers do, and its latency counts from that intended time, so a server
// that stalls is charged for every request that should have gone out
// during the stall (no coordinated omission). Due requests wait in a queue
// of 4 per worker; one finding it full is counted as missed.
func drive(c config, gen func(w int) func() request, send sender) (*stats, time.Duration, int64, time.Duration) {
	var measuring atomic.Bool
	do := func(w int, st *stats, rq request, since time.Time) {
		out, err := send(w, rq)
		if !measuring.Load() {
			return
		}
		st.lat = append(st.lat, time.Since(since))
		if c.Series > 0 {
			st.sent = append(st.sent, since)
		}
		classify(st, out, err)
	}

	all := make([]*stats, c.Concurrency)
	var wg sync.WaitGroup
	var missed atomic.Int64
	stop := make(chan struct{})
	if c.Rate == 0 {
		for w := range all {
			st := &stats{lat: make([]time.Duration, 0, 1<<14)}
			all[w] = st
			next := gen(w)
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					do(w, st, next(), time.Now())
				}
			}(w)
		}
	} else {
		queue := make(chan time.Time, 4*c.Concurrency)
		for w := range all {
			st := &stats{lat: make([]time.Duration, 0, 1<<14)}
			all[w] = st
			next := gen(w)
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for at := range queue {
					do(w, st, next(), at)
				}
			}(w)
		}
		wg.Add(1)
		go func() { // the schedule: request n is due at start + n/rate
			defer wg.Done()
			defer close(queue)
			interval := time.Duration(float64(time.Second) / c.Rate)
			start := time.Now()
			for n := int64(0); ; n++ {
				at := start.Add(time.Duration(n) * interval)
				if d := time.Until(at); d > 0 {
					select {
					case <-stop:
						return
					case <-time.After(d):
					}
				} else {
					select {
					case <-stop:
						return
					default:
					}
				}
				select {
				case queue <- at:
				default:
					if measuring.Load() {
						missed.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(c.Warmup)
	measuring.Store(true)
	measureStart := time.Now()
	cpu0 := cpuTime()
	time.Sleep(c.Duration)
	measuring.Store(false)
	elapsed := time.Since(measureStart)
	cpu := cpuTime() - cpu0
	close(stop)
	wg.Wait()

	var total stats
	for _, st := range all {
		total.lat = append(total.lat, st.lat...)
		total.sent = append(total.sent, st.sent...)
		total.errors += st.errors
		total.allow += st.allow
		total.wait += st.wait
		total.deny += st.deny
		total.other += st.other
		total.accepted += st.accepted
		total.duplicate += st.duplicate
		if total.firstErr == "" {
			total.firstErr = st.firstErr
		}
	}
	return &total, elapsed, missed.Load(), cpu
}

// stdClient sends with net/http (keep-alive, one pool for all workers).
func stdClient(c config) sender {
	tr := &http.Transport{
		MaxIdleConns: c.Concurrency, MaxIdleConnsPerHost: c.Concurrency, MaxConnsPerHost: c.Concurrency,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}
	client := &http.Client{Transport: tr, Timeout: c.Timeout}
	base := strings.TrimSuffix(c.URL, "/")
	return func(_ int, rq request) ([]byte, error) {
		req, _ := http.NewRequest(http.MethodPost, base+rq.path, bytes.NewReader(rq.body))
		for _, h := range rq.header {
			req.Header.Set(h[0], h[1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode/100 != 2 {
			err = fmt.Errorf("status %d: %.200s", resp.StatusCode, out)
		}
		return out, err
	}
}

// rawClient writes HTTP/1.1 requests itself, each worker over its own
// keep-alive connection (redialled after an error or "Connection: close"),
// and reads responses framed by Content-Length or chunked.
func rawClient(c config) sender {
	u, _ := url.Parse(c.URL) // validated
	type conn struct {
		nc  net.Conn
		r   *bufio.Reader
		buf []byte
	}
	conns := make([]conn, c.Concurrency)
	return func(w int, rq request) ([]byte, error) {
		cn := &conns[w]
		if cn.nc == nil {
			nc, err := net.DialTimeout("tcp", u.Host, c.Timeout)
			if err != nil {
				return nil, err
			}
			cn.nc, cn.r = nc, bufio.NewReaderSize(nc, 16<<10)
		}
		head := "POST " + rq.path + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
		for _, h := range rq.header {
			head += h[0] + ": " + h[1] + "\r\n"
		}
		head += "Content-Length: "
		out, keep, err := rawExchange(cn.nc, cn.r, &cn.buf, head, rq.body, c.Timeout)
		if err != nil || !keep {
			cn.nc.Close()
			cn.nc = nil
		}
		return out, err
	}
}

// rawExchange writes one request and reads its response.
func rawExchange(nc net.Conn, r *bufio.Reader, buf *[]byte, head string, body []byte, timeout time.Duration) (out []byte, keep bool, err error) {
	b := append((*buf)[:0], head...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	*buf = b
	_ = nc.SetDeadline(time.Now().Add(timeout))
	if _, err := nc.Write(b); err != nil {
		return nil, false, err
	}
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, false, err
	}
	status := 0
	if len(line) >= 12 && bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		status, _ = strconv.Atoi(string(line[9:12]))
	}
	if status == 0 {
		return nil, false, fmt.Errorf("bad status line %q", line)
	}
	length, keep, chunked := -1, true, false
	for {
		h, err := r.ReadSlice('\n')
		if err != nil {
			return nil, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, _ := bytes.Cut(h, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return nil, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			keep = false
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if !bytes.EqualFold(value, []byte("chunked")) {
				return nil, false, fmt.Errorf("unsupported Transfer-Encoding %q (use -client std)", value)
			}
			chunked = true
		}
	}
	switch {
	case chunked:
		if out, err = readChunked(r); err != nil {
			return nil, false, err
		}
	case length < 0:
		return nil, false, errors.New("response without Content-Length (use -client std)")
	default:
		out = make([]byte, length)
		if _, err := io.ReadFull(r, out); err != nil {
			return nil, false, err
		}
	}
	if status/100 != 2 {
		return out, keep, fmt.Errorf("status %d: %.200s", status, out)
	}
	return out, keep, nil
}

// readChunked reads a chunked body (no trailers expected).
func readChunked(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, up to the empty line
				t, err := r.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return out, nil
				}
			}
		}
		start := len(out)
		out = append(out, make([]byte, n+2)...)
		if _, err := io.ReadFull(r, out[start:]); err != nil {
			return nil, err
		}
		out = out[:start+int(n)] // drop the chunk's CRLF
	}
}

// result is the machine-readable summary (one JSON line).
type result struct {
	Label       string  `json:"label,omitempty"`
	Target      string  `json:"target"`
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"target_rate,omitempty"`
	Seconds     float64 `json:"seconds"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Missed      int64   `json:"missed,omitempty"`
	PerSecond   float64 `json:"checks_per_second"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	P999ms      float64 `json:"p999_ms"`
	MaxMs       float64 `json:"max_ms"`
	Allow       int     `json:"allow"`
	Wait        int     `json:"wait"`
	Deny        int     `json:"deny"`
	Accepted    int     `json:"accepted,omitempty"`
	Duplicates  int     `json:"duplicates,omitempty"`
	// CPUSeconds is the CPU time this generator used while measuring (it
	// shares the machine's cores with the server and PostgreSQL).
	CPUSeconds float64 `json:"loadgen_cpu_seconds"`
}

func report(c config, t *stats, elapsed time.Duration, missed int64, cpu time.Duration) {
	slices.Sort(t.lat)
	pct := func(p float64) float64 {
		if len(t.lat) == 0 {
			return 0
		}
		i := int(p*float64(len(t.lat))+0.5) - 1
		i = max(0, min(i, len(t.lat)-1))
		return float64(t.lat[i].Microseconds()) / 1000
	}
	r := result{
		Label: c.Label, Target: c.Target, Mode: "closed", Concurrency: c.Concurrency, Rate: c.Rate, Seconds: elapsed.Seconds(),
		Requests: len(t.lat), Errors: t.errors, Missed: missed,
		PerSecond: float64(len(t.lat)-t.errors) / elapsed.Seconds(),
		P50ms:     pct(0.50), P90ms: pct(0.90), P99ms: pct(0.99), P999ms: pct(0.999), MaxMs: pct(1),
		Allow: t.allow, Wait: t.wait, Deny: t.deny, Accepted: t.accepted, Duplicates: t.duplicate, CPUSeconds: cpu.Seconds(),
	}
	if c.Rate > 0 {
		r.Mode = "open"
	}
	fmt.Printf("%s %s loop, %d connections%s, %.1fs: %d requests, %d errors%s\n",
		orDefault(c.Label, "run"), r.Mode, c.Concurrency, rateText(c.Rate), r.Seconds, r.Requests, r.Errors, missedText(missed))
	fmt.Printf("  throughput %.0f %s/s   latency p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms\n",
		r.PerSecond, map[bool]string{true: "deliveries", false: "checks"}[c.Target == "webhook"], r.P50ms, r.P90ms, r.P99ms, r.P999ms, r.MaxMs)
	if c.Target == "webhook" {
		fmt.Printf("  accepted (202) %d, of them duplicates %d, other %d; load generator CPU %.1fs (%.2f cores)\n",
			t.accepted, t.duplicate, t.other, r.CPUSeconds, r.CPUSeconds/r.Seconds)
	} else {
		fmt.Printf("  decisions: allow %d, wait %d, deny %d, other %d; load generator CPU %.1fs (%.2f cores)\n",
			t.allow, t.wait, t.deny, t.other, r.CPUSeconds, r.CPUSeconds/r.Seconds)
	}
	if t.firstErr != "" {
		fmt.Printf("  first error: %s\n", t.firstErr)
	}
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
}

// printSeries writes latency percentiles per window of the run, windows
// taken by each request's send time (its due time in an open loop).
func printSeries(w io.Writer, t *stats, window time.Duration) {
	if len(t.sent) == 0 {
		return
	}
	start := slices.MinFunc(t.sent, time.Time.Compare)
	byWin := map[int][]time.Duration{}
	for i, at := range t.sent {
		k := int(at.Sub(start) / window)
		byWin[k] = append(byWin[k], t.lat[i])
	}
	keys := slices.Sorted(maps.Keys(byWin))
	fmt.Fprintf(w, "%10s %8s %9s %9s %9s\n", "from", "requests", "p50 ms", "p99 ms", "max ms")
	for _, k := range keys {
		l := byWin[k]
		slices.Sort(l)
		at := func(p float64) float64 {
			return float64(l[min(len(l)-1, int(p*float64(len(l))))].Microseconds()) / 1000
		}
		fmt.Fprintf(w, "%9.2fs %8d %9.2f %9.2f %9.2f\n", (time.Duration(k) * window).Seconds(), len(l), at(0.5), at(0.99), at(1))
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func rateText(rate float64) string {
	if rate == 0 {
		return ""
	}
	return fmt.Sprintf(" at %.0f/s", rate)
}

func missedText(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d missed (generator queue full: server behind the rate)", n)
}

// cpuTime is the user plus system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
