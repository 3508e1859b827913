package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/evidence"
	"github.com/tollgate-dev/tollgate/service"
)

type attestOptions struct {
	gatewayFlags
	release, service, environment, version, commit     string
	kind, name, status, junitFile, sarifFile, dsseFile string
	digest, link                                       string
	metrics                                            []string
	timeout                                            time.Duration
}

// newAttestCmd is `tollgate attest`: attach evidence to a release. The
// file is read here first (a zero-test report or an empty scan fails
// before anything is sent) and again by the server, which decides.
func newAttestCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var o attestOptions
	cmd := &cobra.Command{
		Use:   "attest",
		Short: "Attach evidence (a status, a JUnit or SARIF report, a DSSE envelope) to a release; fails closed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.fromEnv(getenv)
			if err := runAttest(cmd.Context(), o, stdout); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	o.bind(f, "ci")
	f.StringVar(&o.release, "release", "", "release id (or name it with --service, --environment, --version)")
	f.StringVar(&o.service, "service", "", "service name")
	f.StringVar(&o.environment, "environment", "", "target environment")
	f.StringVar(&o.version, "version", "", "version")
	f.StringVar(&o.commit, "commit", "", "commit SHA the evidence is for: it then counts only for checks of that commit (with --service, --environment, --version)")
	f.StringVar(&o.kind, "kind", "", "evidence kind: tests, security_scan, artifact_signature, performance, approval_checklist or one the policy declares")
	f.StringVar(&o.name, "name", "", "evidence name (e.g. unit, gosec)")
	f.StringVar(&o.status, "status", "", "passed or failed")
	f.StringVar(&o.junitFile, "junit", "", "JUnit XML report file")
	f.StringVar(&o.sarifFile, "sarif", "", "SARIF report file")
	f.StringVar(&o.dsseFile, "dsse", "", "DSSE envelope file (an in-toto statement signed with a key the environment trusts)")
	f.StringVar(&o.digest, "digest", "", "artifact digest sha256:… the evidence is bound to")
	f.StringVar(&o.link, "evidence-url", "", "link to the evidence (CI run, report page)")
	f.StringArrayVar(&o.metrics, "metric", nil, "measurement NAME=VALUE (repeatable, e.g. p99_ms=240)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "request timeout")
	_ = cmd.MarkFlagRequired("kind")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func runAttest(ctx context.Context, o attestOptions, stdout io.Writer) error {
	if o.url == "" || o.token == "" {
		return errors.New("--url and --token (or TOLLGATE_URL, TOLLGATE_TOKEN) are required")
	}
	in, err := attestInput(o)
	if err != nil {
		return err
	}
	id := o.release
	if id != "" && o.commit != "" {
		// The commit travels in the release's name only: dropped here, the
		// evidence would count for every commit of the release.
		return errors.New("--commit binds the evidence to a commit: name the release by --service, --environment and --version with it, not --release")
	}
	if id == "" {
		if o.service == "" || o.environment == "" || o.version == "" {
			return errors.New("name the release: --release ID, or --service, --environment and --version")
		}
		id = core.ReleaseID(o.service, o.version, o.environment)
		in.Release = &service.ReleaseRef{Service: o.service, Environment: o.environment, Version: o.version, Commit: o.commit}
	}
	body, _ := json.Marshal(in)
	client := retryablehttp.NewClient()
	client.RetryMax, client.Logger = 3, nil
	client.HTTPClient.Timeout = o.timeout
	client.ErrorHandler = retryablehttp.PassthroughErrorHandler
	noRedirects(client)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(o.url, "/")+"/api/v1/releases/"+id+"/evidence", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+o.token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("gateway unreachable: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("evidence refused (HTTP %d): %s", resp.StatusCode, errorText(raw))
	}
	var e core.Evidence
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("unreadable answer: %w", err)
	}
	fmt.Fprintf(stdout, "recorded %s %s: %s (evidence %s, release %s)\n", e.Kind, e.Name, e.Status, e.ID, e.ReleaseID)
	return nil
}

// attestInput reads the one document given and checks it locally.
func attestInput(o attestOptions) (service.EvidenceInput, error) {
	in := service.EvidenceInput{Kind: o.kind, Name: o.name, Digest: o.digest, URL: o.link}
	given := 0
	for _, s := range []string{o.junitFile, o.sarifFile, o.dsseFile} {
		if s != "" {
			given++
		}
	}
	if o.status != "" {
		given++
	}
	if given != 1 {
		return in, errors.New("give exactly one of --status, --junit, --sarif or --dsse")
	}
	for _, m := range o.metrics {
		k, v, ok := strings.Cut(m, "=")
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || err != nil {
			return in, fmt.Errorf("--metric %q: want NAME=NUMBER", m)
		}
		if in.Metrics == nil {
			in.Metrics = map[string]float64{}
		}
		in.Metrics[strings.TrimSpace(k)] = f
	}
	read := func(path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return nil, fmt.Errorf("%s is empty", path)
		}
		return b, nil
	}
	switch {
	case o.status != "":
		s := o.status
		in.Status = &s
	case o.junitFile != "":
		b, err := read(o.junitFile)
		if err != nil {
			return in, err
		}
		if _, err := evidence.JUnit(b); err != nil {
			return in, fmt.Errorf("%s: %w", o.junitFile, err)
		}
		s := string(b)
		in.JUnit = &s
	case o.sarifFile != "":
		b, err := read(o.sarifFile)
		if err != nil {
			return in, err
		}
		if _, err := evidence.SARIF(b); err != nil {
			return in, fmt.Errorf("%s: %w", o.sarifFile, err)
		}
		in.SARIF = b
	default:
		b, err := read(o.dsseFile)
		if err != nil {
			return in, err
		}
		if !json.Valid(b) {
			return in, fmt.Errorf("%s is not a JSON DSSE envelope", o.dsseFile)
		}
		in.DSSE = b
	}
	return in, nil
}
