//go:build unix

// Package docs_test runs the examples of the documentation against a real
// tollgate, so that a page and the code it describes cannot drift apart.
//
// pipelines.md marks each CI example with `<!-- tested: NAME -->` before
// its fenced block. The test reads the blocks from the page itself, takes
// each apart the way its CI would (a GitHub workflow's steps, a GitLab
// job's before_script and script, a Jenkinsfile's sh steps), and runs the
// shell scripts in order through the shell that CI uses, with the
// variables that CI sets and the tollgate binary built from this tree on
// PATH, against a real server on a loopback port.
package docs_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
)

const (
	pipelinesAdmin  = "docs-admin-token-0123456789"
	pipelinesSecret = "docs-servicenow-secret-0123456789"
	// installLine is how the examples put tollgate on a runner; the test
	// puts the binary it built on PATH instead (there is no network here).
	installLine = "go install github.com/tollgate-dev/tollgate/cmd/tollgate@latest"
	approvedKey = "CHG0030001"
	pendingKey  = "CHG0030002"
	sha         = "c6d86dc654b12425e706bcf951adfe5a8627a517"
	// stepTimeout bounds one step: every scenario answers in a few
	// seconds, so a step still running is a hang, not a slow machine.
	stepTimeout = 30 * time.Second
)

// example is one tested block of pipelines.md and how its CI runs it.
type example struct {
	name     string // its marker
	parse    func(t *testing.T, block string, in ciInput) []step
	report   string                  // the step that reports the deployment
	provider string                  // as the report names it
	version  string                  // the version it deploys on a build without a tag; "" means the commit
	runID    func(run string) string // the run id the report gives for the CI's run; nil: the run's own
}

var examples = []example{
	{"github-actions", githubSteps, "Deploy and report", "github", "v1.4.2", nil},                    // the workflow runs on tags
	{"gitlab-ci", gitlabSteps, "deploy", "gitlab", "", func(run string) string { return "9" + run }}, // $CI_JOB_ID: the job's, as GitLab's hooks name it
	{"jenkins", jenkinsSteps, "Deploy", "jenkins", "", func(run string) string { return "job/payments-api/" + run + "/" }},
}

// scenario is one run of an example: the user's variables, the build, and
// what the deployment script does.
type scenario struct {
	name       string
	change     *string // CHANGE_KEY; nil: not defined
	tag        string  // a tag build's tag
	env        string  // DEPLOY_ENV in place of the example's production
	deployFail bool
	approveAt  time.Duration // send the pending change's approval this long after the start
	only       string        // run for this example only
}

var scenarios = []scenario{
	{name: "approved change", change: ptr(approvedKey)},
	{name: "approved change, tag build", change: ptr(approvedKey), tag: "v1.4.2"},
	{name: "no change key"},
	{name: "no change key, development", env: "development"},
	{name: "deploy fails", change: ptr(approvedKey), deployFail: true},
	// One long-poll through a pipeline is enough.
	{name: "waits for the approval", change: ptr(pendingKey), approveAt: 1500 * time.Millisecond, only: "jenkins"},
}

// TestPipelineExamples runs every tested example of pipelines.md:
//   - an approved change in CHANGE_KEY: the gate allows, deploy.sh runs and
//     the deployment is recorded with the CI's version, commit, run id and
//     change;
//   - CHANGE_KEY unset (GitHub and Jenkins set it empty, GitLab leaves it
//     undefined): no --change reaches the gate, which denies with
//     NO_CHANGE (exit 1) in production, and deploy.sh does not run; in
//     development the gate is open and the report carries no change;
//   - a tag build takes the tag as the version, a build without a tag the
//     commit (Jenkins' TAG_NAME and GitLab's CI_COMMIT_TAG are unset then);
//   - a failing deploy.sh is reported as failed and fails the step;
//   - a report tollgate refuses (400) prints the reason and fails the step;
//   - (Jenkins) a change still awaiting approval holds the gate stage until
//     the approval webhook lands, then the pipeline deploys.
func TestPipelineExamples(t *testing.T) {
	for _, tool := range []string{"bash", "sh", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if tool == "bash" && os.Getenv("CI") != "true" {
				t.Skip("bash is not installed: the pipeline examples run through a shell")
			}
			t.Fatalf("%s is needed to run the pipeline examples: %v", tool, err)
		}
	}
	blocks := testedBlocks(t, "pipelines.md")
	// The embedded store, as a first installation has it: the examples
	// exercise the pipelines' side, and the stores' parity has its own
	// tests.
	srv := bootPipelinesServer(t, "sqlite:"+filepath.Join(t.TempDir(), "tollgate.db"))
	r := &exampleRunner{bin: buildTollgate(t), srv: srv, token: srv.token(core.RoleCI), run: 1000}
	srv.seedChange(approvedKey, "approved", time.Now().Add(-time.Minute))
	srv.seedChange(pendingKey, "requested", time.Now().Add(-time.Minute))
	for _, ex := range examples {
		block, ok := blocks[ex.name]
		if !ok {
			t.Fatalf("pipelines.md has no block marked <!-- tested: %s -->", ex.name)
		}
		t.Run(ex.name, func(t *testing.T) {
			for _, sc := range scenarios {
				if sc.only == "" || sc.only == ex.name {
					t.Run(sc.name, func(t *testing.T) { r.scenario(t, ex, block, sc) })
				}
			}
			t.Run("report refused", func(t *testing.T) { r.reportRefused(t, ex, block) })
		})
	}
}

// exampleRunner runs the examples against one server; every run has its
// own run id, so each reports its own deployment.
type exampleRunner struct {
	bin, token string
	srv        *pipelinesServer
	run        int
}

func (r *exampleRunner) input(change *string, tag string) ciInput {
	r.run++
	return ciInput{token: r.token, change: change, tag: tag, runID: fmt.Sprint(r.run)}
}

// scenario runs the whole example and checks what the gate, deploy.sh and
// the recorded deployment show.
func (r *exampleRunner) scenario(t *testing.T, ex example, block string, sc scenario) {
	in := r.input(sc.change, sc.tag)
	steps := ex.parse(t, block, in)
	runID := in.runID
	if ex.runID != nil {
		runID = ex.runID(in.runID)
	}
	ws := workspace(t, sc.deployFail)
	if sc.approveAt > 0 {
		approved := make(chan struct{})
		go func() {
			defer close(approved)
			time.Sleep(sc.approveAt)
			r.srv.seedChange(pendingKey, "approved", time.Now())
		}()
		defer func() { <-approved }()
	}
	start := time.Now()
	overrides := map[string]string{"TOLLGATE_URL": r.srv.url}
	env := "production"
	if sc.env != "" {
		overrides["DEPLOY_ENV"], env = sc.env, sc.env
	}
	out := runSteps(t, r.bin, ws, steps, overrides)
	version := sha
	switch {
	case sc.tag != "":
		version = sc.tag
	case ex.version != "":
		version = ex.version
	}
	switch {
	case sc.change == nil && env == "production":
		if out.failed == "" || out.code != 1 || !strings.Contains(out.output, "NO_CHANGE") {
			t.Fatalf("want the gate to deny with NO_CHANGE (exit 1); failed step %q exit %d:\n%s", out.failed, out.code, out.output)
		}
		if strings.Contains(out.output, "refused") || strings.Contains(out.output, "(400)") {
			t.Fatalf("an unset CHANGE_KEY must not make a refused request:\n%s", out.output)
		}
		if deployed(ws) || slices.Contains(out.ran, ex.report) {
			t.Fatalf("deployed after a deny (steps run: %v)", out.ran)
		}
		if r.srv.deployment(ex.provider, runID) != nil {
			t.Fatal("a deployment was reported after a deny")
		}
	case sc.deployFail:
		if out.failed != ex.report || !deployed(ws) {
			t.Fatalf("want the report step to fail after deploying; failed %q:\n%s", out.failed, out.output)
		}
		r.srv.checkDeployment(t, ex.provider, runID, env, "failed", version, []string{approvedKey})
	default:
		if out.failed != "" || !deployed(ws) {
			t.Fatalf("step %q failed (exit %d):\n%s", out.failed, out.code, out.output)
		}
		var changes []string
		if sc.change != nil {
			changes = []string{*sc.change}
		}
		r.srv.checkDeployment(t, ex.provider, runID, env, "succeeded", version, changes)
		if sc.approveAt > 0 && time.Since(start) < sc.approveAt {
			t.Fatalf("allowed after %v, before the approval was sent", time.Since(start))
		}
	}
}

// reportRefused runs only the report step, for an environment the policy
// does not know: tollgate answers 400, and the step must print why.
func (r *exampleRunner) reportRefused(t *testing.T, ex example, block string) {
	in := r.input(ptr(approvedKey), "")
	steps := ex.parse(t, block, in)
	i := slices.IndexFunc(steps, func(s step) bool { return s.name == ex.report })
	if i < 0 {
		t.Fatalf("no step %q", ex.report)
	}
	out := runSteps(t, r.bin, workspace(t, false), steps[i:i+1], map[string]string{"TOLLGATE_URL": r.srv.url, "DEPLOY_ENV": "prod-eu"})
	// The step's own check (GitLab's and Jenkins' deploy steps ask
	// again) or the report says it, as tollgate or curl prints it.
	if out.failed != ex.report || !strings.Contains(strings.ReplaceAll(out.output, `\"`, `"`), `unknown environment "prod-eu"`) || !strings.Contains(out.output, "400") {
		t.Fatalf("want the refused report's reason printed and the step failed; failed %q exit %d:\n%s", out.failed, out.code, out.output)
	}
}

func ptr(s string) *string { return &s }

// ciInput is what differs between runs of one example: the secrets and
// variables a user configures, and the run the CI describes.
type ciInput struct {
	token  string
	change *string // nil: the variable is not defined
	tag    string  // "" : not a tag build
	runID  string
}

// step is one shell script of an example, run as its CI runs it.
type step struct {
	name   string
	shell  []string          // the interpreter and its flags; the script file is appended
	script string            // exactly what the CI hands the shell
	env    map[string]string // every variable the CI sets for it
}

// --- extracting the examples

var testedBlock = regexp.MustCompile("(?s)<!-- tested: ([a-z0-9-]+) -->\n```[a-z]*\n(.*?\n)```")

// testedBlocks returns the marked fenced blocks of a page by name.
func testedBlocks(t *testing.T, page string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range testedBlock.FindAllStringSubmatch(string(raw), -1) {
		if _, dup := out[m[1]]; dup {
			t.Fatalf("%s: two blocks are marked %q", page, m[1])
		}
		out[m[1]] = m[2]
	}
	if n := strings.Count(string(raw), "<!-- tested:"); n != len(out) {
		t.Fatalf("%s: %d markers but %d marked fenced blocks (a marker must sit right above its block)", page, n, len(out))
	}
	return out
}

// decodeStrict decodes YAML refusing keys the target does not name, so an
// example that grows a feature the test does not run (an `if:`, `rules:`)
// fails here instead of being skipped silently.
func decodeStrict(t *testing.T, src []byte, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("example YAML: %v", err)
	}
}

// githubSteps runs a workflow's job the way GitHub Actions does on Linux:
// each `run:` step through `bash -e {0}` (the default shell), with the
// workflow's, job's and step's env over the runner's variables; `uses:`
// steps (checkout, setup-go) are the workspace the test prepares.
func githubSteps(t *testing.T, block string, in ciInput) []step {
	type ghStep struct {
		Name string            `yaml:"name"`
		Uses string            `yaml:"uses"`
		With map[string]any    `yaml:"with"`
		Run  string            `yaml:"run"`
		Env  map[string]string `yaml:"env"`
	}
	var wf struct {
		On   any               `yaml:"on"`
		Env  map[string]string `yaml:"env"`
		Jobs map[string]struct {
			RunsOn      string            `yaml:"runs-on"`
			Environment string            `yaml:"environment"`
			Env         map[string]string `yaml:"env"`
			Steps       []ghStep          `yaml:"steps"`
		} `yaml:"jobs"`
	}
	decodeStrict(t, []byte(block), &wf)
	if len(wf.Jobs) != 1 {
		t.Fatalf("workflow: want one job, got %d", len(wf.Jobs))
	}
	runner := map[string]string{
		"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_SHA": sha, "GITHUB_REF": "refs/tags/v1.4.2",
		"GITHUB_REF_NAME": "v1.4.2", "GITHUB_REF_TYPE": "tag", "GITHUB_RUN_ID": in.runID, "GITHUB_RUN_NUMBER": "7",
		"GITHUB_RUN_ATTEMPT": "1", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/payments",
		"GITHUB_ACTOR": "dave", "GITHUB_EVENT_NAME": "push", "GITHUB_WORKFLOW": "deploy", "RUNNER_OS": "Linux",
	}
	secrets := map[string]string{"TOLLGATE_TOKEN": in.token}
	vars := map[string]string{}
	if in.change != nil {
		vars["CHANGE_KEY"] = *in.change
	}
	expr := regexp.MustCompile(`^\$\{\{\s*(secrets|vars)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$`)
	eval := func(v string) string {
		if !strings.Contains(v, "${{") {
			return v
		}
		m := expr.FindStringSubmatch(v)
		if m == nil {
			t.Fatalf("workflow: the test evaluates only ${{ secrets.X }} and ${{ vars.X }}, not %q", v)
		}
		if m[1] == "secrets" {
			return secrets[m[2]]
		}
		return vars[m[2]] // an undefined variable is the empty string
	}
	var steps []step
	for _, job := range wf.Jobs {
		installed := false
		for i, s := range job.Steps {
			if s.Uses != "" {
				continue
			}
			if strings.TrimSpace(s.Run) == installLine {
				installed = true
				continue
			}
			if strings.Contains(s.Run, "${{") {
				t.Fatalf("step %q: a script must read variables, not paste ${{ }} expressions", s.Name)
			}
			env := clone(runner)
			for _, layer := range []map[string]string{wf.Env, job.Env, s.Env} {
				for k, v := range layer {
					env[k] = eval(v)
				}
			}
			name := s.Name
			if name == "" {
				name = fmt.Sprintf("step %d", i+1)
			}
			steps = append(steps, step{name: name, shell: []string{"bash", "-e"}, script: s.Run, env: env})
		}
		if !installed {
			t.Fatalf("workflow: no step runs %q", installLine)
		}
	}
	return steps
}

// gitlabSteps runs a .gitlab-ci.yml's jobs in the order of their stages,
// each job's before_script and script as one shell script (`sh -e`, as a
// runner does for an image's shell), with the predefined variables of a
// pipeline. CI_COMMIT_TAG is defined only on a tag pipeline.
func gitlabSteps(t *testing.T, block string, in ciInput) []step {
	type job struct {
		Stage        string            `yaml:"stage"`
		Needs        []string          `yaml:"needs"`
		Environment  string            `yaml:"environment"`
		Image        string            `yaml:"image"`
		Variables    map[string]string `yaml:"variables"`
		BeforeScript []string          `yaml:"before_script"`
		Script       []string          `yaml:"script"`
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatalf("gitlab-ci: %v", err)
	}
	top := doc.Content[0]
	var (
		stages   []string
		globals  map[string]string
		defaults job
		names    []string
		jobs     = map[string]job{}
	)
	for i := 0; i < len(top.Content); i += 2 {
		key, val := top.Content[i].Value, top.Content[i+1]
		raw, err := yaml.Marshal(val)
		if err != nil {
			t.Fatal(err)
		}
		switch key {
		case "stages":
			decodeStrict(t, raw, &stages)
		case "variables":
			decodeStrict(t, raw, &globals)
		case "default":
			decodeStrict(t, raw, &defaults)
		default:
			var j job
			decodeStrict(t, raw, &j)
			names = append(names, key)
			jobs[key] = j
		}
	}
	predefined := map[string]string{
		"CI": "true", "GITLAB_CI": "true", "CI_COMMIT_SHA": sha, "CI_COMMIT_SHORT_SHA": sha[:8],
		"CI_COMMIT_REF_NAME": "main", "CI_PIPELINE_ID": in.runID, "CI_PIPELINE_URL": "https://gitlab.example.com/acme/payments/-/pipelines/" + in.runID,
		"CI_JOB_ID": "9" + in.runID, "CI_JOB_URL": "https://gitlab.example.com/acme/payments/-/jobs/9" + in.runID,
		"CI_PROJECT_PATH": "acme/payments", "CI_SERVER_URL": "https://gitlab.example.com", "GITLAB_USER_LOGIN": "dave",
		"TOLLGATE_TOKEN": in.token, // a masked CI/CD variable
	}
	if in.tag != "" {
		predefined["CI_COMMIT_TAG"], predefined["CI_COMMIT_REF_NAME"] = in.tag, in.tag
	}
	if in.change != nil {
		predefined["CHANGE_KEY"] = *in.change
	}
	var steps []step
	installed := false
	for _, stage := range stages {
		for _, name := range names {
			j := jobs[name]
			if j.Stage != stage {
				continue
			}
			before := j.BeforeScript
			if before == nil {
				before = defaults.BeforeScript
			}
			var lines []string
			for _, l := range append(slices.Clone(before), j.Script...) {
				if strings.TrimSpace(l) == installLine {
					installed = true
					continue
				}
				lines = append(lines, l)
			}
			env := clone(predefined)
			if j.Environment != "" {
				env["CI_ENVIRONMENT_NAME"] = j.Environment
			}
			for _, layer := range []map[string]string{globals, j.Variables} {
				for k, v := range layer {
					env[k] = v
				}
			}
			steps = append(steps, step{name: name, shell: []string{"sh", "-e"}, script: strings.Join(lines, "\n") + "\n", env: env})
		}
	}
	if len(steps) != len(names) {
		t.Fatalf("gitlab-ci: %d jobs but %d in the listed stages", len(names), len(steps))
	}
	if !installed {
		t.Fatalf("gitlab-ci: no script runs %q", installLine)
	}
	return steps
}

var (
	jenkinsParam = regexp.MustCompile(`string\(name: '(\w+)', defaultValue: '([^']*)'`)
	jenkinsEnv   = regexp.MustCompile(`^\s*(\w+)\s*=\s*(?:'([^']*)'|credentials\('([^']+)'\))\s*$`)
	jenkinsStage = regexp.MustCompile(`stage\('([^']+)'\)`)
	jenkinsSh    = regexp.MustCompile(`(?s)\bsh\s*'''(.*?)'''`)
)

// jenkinsSteps runs a declarative Jenkinsfile's sh steps in stage order the
// way the agent does: Groovy's escapes of the ”' string applied, then
// `sh -xe` on the script, with the job's parameters and environment block
// over Jenkins' variables. TAG_NAME exists only on tag builds.
func jenkinsSteps(t *testing.T, block string, in ciInput) []step {
	if strings.Contains(block, `"""`) || regexp.MustCompile(`\bsh\s*[("]`).MatchString(block) {
		t.Fatal(`Jenkinsfile: every sh step must be a single-quoted ''' string (Groovy must not interpolate)`)
	}
	env := map[string]string{
		"BUILD_NUMBER": in.runID, "BUILD_ID": in.runID, "JOB_NAME": "payments-api",
		"BUILD_URL": "https://ci.example.com/job/payments-api/" + in.runID + "/", "BUILD_TAG": "jenkins-payments-api-" + in.runID,
		"JENKINS_URL": "https://ci.example.com/", "GIT_COMMIT": sha, "GIT_BRANCH": "origin/main", "NODE_NAME": "built-in",
	}
	if in.tag != "" {
		env["TAG_NAME"] = in.tag
	}
	for _, m := range jenkinsParam.FindAllStringSubmatch(block, -1) {
		env[m[1]] = m[2]
	}
	if in.change != nil {
		env["CHANGE_KEY"] = *in.change
	}
	credentials := map[string]string{"tollgate-ci-token": in.token}
	envBlock := regexp.MustCompile(`(?s)\benvironment \{\n(.*?)\n\s*\}`).FindStringSubmatch(block)
	if envBlock == nil {
		t.Fatal("Jenkinsfile: no environment block")
	}
	for _, line := range strings.Split(envBlock[1], "\n") {
		m := jenkinsEnv.FindStringSubmatch(line)
		switch {
		case m == nil:
			t.Fatalf("Jenkinsfile: the test does not understand the environment line %q", line)
		case m[3] != "":
			v, ok := credentials[m[3]]
			if !ok {
				t.Fatalf("Jenkinsfile: unknown credentials %q", m[3])
			}
			env[m[1]] = v
		default:
			env[m[1]] = m[2]
		}
	}
	stages := jenkinsStage.FindAllStringSubmatchIndex(block, -1)
	var steps []step
	for _, m := range jenkinsSh.FindAllStringSubmatchIndex(block, -1) {
		stage := ""
		for _, s := range stages {
			if s[0] < m[0] {
				stage = block[s[2]:s[3]]
			}
		}
		script, err := groovySingleQuoted(block[m[2]:m[3]])
		if err != nil {
			t.Fatalf("Jenkinsfile stage %q: %v", stage, err)
		}
		steps = append(steps, step{name: stage, shell: []string{"sh", "-xe"}, script: script, env: clone(env)})
	}
	if len(steps) != len(stages) {
		t.Fatalf("Jenkinsfile: %d stages but %d sh steps", len(stages), len(steps))
	}
	return steps
}

// groovySingleQuoted applies the escapes of a Groovy ”'…”' string: a
// backslash before a newline joins the lines, the usual escapes turn into
// their characters, and any other backslash is a Groovy compile error.
func groovySingleQuoted(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("a string ends in a backslash")
		}
		i++
		switch c := s[i]; c {
		case '\n':
		case '\\', '\'', '"', '$':
			b.WriteByte(c)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		default:
			return "", fmt.Errorf(`Groovy rejects the escape \%c`, c)
		}
	}
	return b.String(), nil
}

// --- running them

type outcome struct {
	ran    []string // the steps that ran, in order
	failed string   // the step that failed, "" when none did
	code   int      // its exit code
	output string   // everything every step printed
}

// runSteps runs steps in order in dir until one fails, each in a fresh
// environment: the step's variables, then overrides (the server's real
// URL in place of the example's), PATH with the built tollgate first.
func runSteps(t *testing.T, bin, dir string, steps []step, overrides map[string]string) outcome {
	t.Helper()
	var out outcome
	var all bytes.Buffer
	for i, s := range steps {
		file := filepath.Join(t.TempDir(), fmt.Sprintf("step%d.sh", i))
		if err := os.WriteFile(file, []byte(s.script), 0o600); err != nil {
			t.Fatal(err)
		}
		env := clone(s.env)
		for k, v := range overrides {
			env[k] = v
		}
		env["PATH"] = filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH")
		env["HOME"] = dir
		ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
		cmd := exec.CommandContext(ctx, s.shell[0], append(s.shell[1:], file)...)
		cmd.Dir = dir
		// At the timeout, kill the shell's whole process group (tollgate
		// and curl too), and stop waiting for output a stray child holds.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 2 * time.Second
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		fmt.Fprintf(&all, "--- %s\n", s.name)
		cmd.Stdout, cmd.Stderr = &all, &all
		err := cmd.Run()
		cancel()
		out.ran = append(out.ran, s.name)
		if err != nil {
			out.failed, out.code = s.name, -1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				out.code = ee.ExitCode()
			}
			break
		}
	}
	out.output = all.String()
	if testing.Verbose() {
		t.Logf("steps run: %v, failed: %q (exit %d)\n%s", out.ran, out.failed, out.code, out.output)
	}
	return out
}

// workspace is a checkout with the deploy.sh the examples call: it leaves
// a file behind, and fails when asked to.
func workspace(t *testing.T, fail bool) string {
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"deploying $SERVICE\"\n: >deployed\n"
	if fail {
		script += "echo 'deploy failed' >&2\nexit 1\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "deploy.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func deployed(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "deployed"))
	return err == nil
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// buildTollgate builds the tollgate binary of this tree into a temporary
// directory (the build cache makes this a link step once the suite has
// compiled the packages).
func buildTollgate(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first on PATH
	if err != nil {
		t.Fatalf("the go command is needed to build tollgate: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tollgate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/tollgate-dev/tollgate/cmd/tollgate")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build tollgate: %v\n%s", err, out)
	}
	return bin
}

// --- the server

type pipelinesServer struct {
	t    *testing.T
	url  string
	http *http.Client
}

// bootPipelinesServer starts the real gateway on the database at dbURL and
// a loopback port, with a ServiceNow connector to receive the changes.
func bootPipelinesServer(t *testing.T, dbURL string) *pipelinesServer {
	t.Helper()
	return bootServer(t, dbURL, "connectors:\n  - {name: servicenow, type: servicenow, webhook_secret: "+pipelinesSecret+"}\ninbox:\n  poll_interval: 50ms\n")
}

// bootServer starts a real tollgate with the configuration cfgYAML on a
// loopback port, stopped when the test ends.
func bootServer(t *testing.T, dbURL, cfgYAML string) *pipelinesServer {
	t.Helper()
	env := map[string]string{"TOLLGATE_ADMIN_TOKEN": pipelinesAdmin, "TOLLGATE_DATABASE_URL": dbURL}
	cfg, err := config.Parse([]byte(cfgYAML), func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	// Above net/http's 5 s grace for a connection that never carried a
	// request, so the drain cannot expire on one under load.
	cfg.ShutdownTimeout = config.Duration(10 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), app.Options{})
	if err != nil {
		cancel()
		t.Fatalf("app: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
			a.Close()
		})
	})
	return &pipelinesServer{t: t, url: "http://" + ln.Addr().String(), http: &http.Client{Timeout: 30 * time.Second}}
}

func (s *pipelinesServer) do(method, path, token string, header http.Header, body []byte) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (s *pipelinesServer) token(role core.Role) string {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"name": "docs-" + string(role), "role": role})
	st, raw := s.do("POST", "/api/v1/tokens", pipelinesAdmin, nil, body)
	var out struct{ Token string }
	if st != http.StatusCreated || json.Unmarshal(raw, &out) != nil {
		s.t.Fatalf("create %s token: %d %s", role, st, raw)
	}
	return out.Token
}

// seedChange delivers a ServiceNow change_request for payments-api, open
// from an hour ago for four hours, signed as the connector expects, and
// waits until the gate sees its approval.
func (s *pipelinesServer) seedChange(key, approval string, updated time.Time) {
	s.t.Helper()
	const layout = "2006-01-02 15:04:05"
	now := time.Now().UTC()
	body, _ := json.Marshal(map[string]string{
		"sys_class_name": "change_request", "number": key, "short_description": "Upgrade payments-api",
		"type": "normal", "state": "-2", "approval": approval, "risk": "3",
		"start_date": now.Add(-time.Hour).Format(layout), "end_date": now.Add(3 * time.Hour).Format(layout),
		"cmdb_ci": "payments-api", "requested_by": "carla.diaz", "risk_impact_analysis": "low: one service",
		"backout_plan": "redeploy the previous version", "sys_updated_on": updated.UTC().Format(layout),
	})
	mac := hmac.New(sha256.New, []byte(pipelinesSecret))
	mac.Write(body)
	h := http.Header{"X-Tollgate-Signature": {"sha256=" + hex.EncodeToString(mac.Sum(nil))}}
	if st, raw := s.do("POST", "/webhooks/servicenow", "", h, body); st != http.StatusAccepted {
		s.t.Errorf("deliver %s: %d %s", key, st, raw)
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got struct {
			Change core.Change `json:"change"`
		}
		st, raw := s.do("GET", "/api/v1/changes/"+key, pipelinesAdmin, nil, nil)
		if st == http.StatusOK && json.Unmarshal(raw, &got) == nil && string(got.Change.Approval) == approval {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("change %s not %s after 10s: %d %s", key, approval, st, raw)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deployment returns the recorded deployment of a CI run, or nil.
func (s *pipelinesServer) deployment(provider, runID string) *core.Deployment {
	s.t.Helper()
	st, raw := s.do("GET", "/api/v1/deployments?limit=100", pipelinesAdmin, nil, nil)
	var page struct{ Items []core.Deployment }
	if st != http.StatusOK || json.Unmarshal(raw, &page) != nil {
		s.t.Fatalf("list deployments: %d %s", st, raw)
	}
	for _, d := range page.Items {
		if d.Provider == provider && d.RunID == runID {
			return &d
		}
	}
	return nil
}

func (s *pipelinesServer) checkDeployment(t *testing.T, provider, runID, env, status, version string, changes []string) {
	t.Helper()
	d := s.deployment(provider, runID)
	switch {
	case d == nil:
		t.Fatalf("no deployment recorded for %s run %s", provider, runID)
	case d.Service != "payments-api" || d.Environment != env || d.Status != status || d.Version != version ||
		d.Commit != sha || !slices.Equal(d.Changes, changes) || d.URL == "" || d.Actor == "":
		t.Fatalf("deployment %+v; want %s in %s, version %s, changes %v", *d, status, env, version, changes)
	case d.FinishedAt == nil || d.FinishedAt.Before(d.StartedAt) || time.Since(d.StartedAt) > time.Minute:
		t.Fatalf("deployment times: started %v, finished %v", d.StartedAt, d.FinishedAt)
	}
	if status == core.DeploySucceeded && env == "production" && len(changes) > 0 {
		// The policy requires a review of this release before the
		// service's next one goes to production (PIR_PENDING): signed off
		// here, as a change manager would, so the next example runs (the
		// examples deploy one release again and again: 409 once signed).
		st, raw := s.do("POST", "/api/v1/releases/"+d.ReleaseID+"/pir", pipelinesAdmin, nil, []byte(`{"summary":"reviewed"}`))
		if st != http.StatusOK && st != http.StatusConflict {
			t.Fatalf("sign off the review of %s: %d %s", d.ReleaseID, st, raw)
		}
	}
}
