package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/app"
	"github.com/tollgate-dev/tollgate/connectors"
)

// newDoctorCmd is `tollgate doctor`: the online check of a configuration
// against the database and the systems its connectors name.
func newDoctorCmd(c *cli) *cobra.Command {
	var (
		asJSON  bool
		timeout time.Duration
		only    []string
	)
	cmd := &cobra.Command{
		Use:   "doctor [--config FILE]",
		Short: "Check the configuration against the live database, ITSMs and CIs (reads only); exit 1 on any failure",
		Long: `Check what "serve" will need from the systems the configuration names,
with its own credentials, reading only: the database answers and its schema
is current; each connector with an api block can sign in and read what
tollgate reads (ServiceNow's change, incident and approval tables; Jira's
projects; GitLab's projects and their webhooks; Jenkins's jobs; the GitHub
App's installations and delivery log); and the webhooks the CI or ITSM
sends point at this connector's /webhooks/<name>, are enabled, signed and
send the events its mapping profiles read (where the system lets the
credentials see its webhooks); evidence bundles are signed, and the audit
chain still reaches the newest anchor of audit.anchor.file. Nothing is
migrated, written or sent.

Each finding is ok, warn (works, but something is lost, delayed or could
not be checked) or fail (tollgate will not be able to do it). The exit
status is 1 when any check failed, else 0. Run it before a rollout, after
rotating a credential, or when an alert of docs/alerts.md fires.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := c.load()
			if err != nil {
				return err
			}
			sections := app.Doctor(cmd.Context(), cfg, log, app.DoctorOptions{Timeout: timeout, Connectors: only})
			fails, warns := connectors.Count(sections)
			if asJSON {
				if err := writeDoctorJSON(c.stdout, sections, fails, warns); err != nil {
					return err
				}
			} else {
				writeDoctorText(c.stdout, sections, fails, warns)
			}
			if fails > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d checks failed", fails)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the findings as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "time allowed for each connector's checks")
	cmd.Flags().StringSliceVar(&only, "connector", nil, "check only this connector (repeat, or NAME,NAME; the database is always checked)")
	return cmd
}

func writeDoctorText(w io.Writer, sections []app.DoctorSection, fails, warns int) {
	width := 0 // the check column, one width for every section
	for _, s := range sections {
		for _, f := range s.Findings {
			width = max(width, len(f.Check))
		}
	}
	for _, s := range sections {
		head := s.Scope
		if s.Type != "" {
			head += " (" + s.Type + ")"
		}
		fmt.Fprintln(w, head)
		for _, f := range s.Findings {
			fmt.Fprintf(w, "  %-4s  %-*s  %s\n", f.Status, width, f.Check, f.Detail)
		}
	}
	fmt.Fprintf(w, "%d failed, %d warnings\n", fails, warns)
}

func writeDoctorJSON(w io.Writer, sections []app.DoctorSection, fails, warns int) error {
	return printJSON(w, struct {
		Sections []app.DoctorSection `json:"sections"`
		Failed   int                 `json:"failed"`
		Warnings int                 `json:"warnings"`
	}{sections, fails, warns})
}
