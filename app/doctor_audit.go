package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/anchor"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
)

// doctorAudit says what makes the audit evidence provable: whether
// bundles are signed, and whether the chain reaches the newest anchor of
// audit.anchor.file (db nil: a database not reached or not migrated,
// whose chain is not compared).
func doctorAudit(ctx context.Context, cfg *config.Config, db *store.DB) DoctorSection {
	s := DoctorSection{Scope: "audit", Findings: cfg.AuditFindings()}
	a := cfg.Audit.Anchor
	if a.URL != "" {
		host := ""
		if u, err := url.Parse(a.URL); err == nil {
			host = u.Host
		}
		s.Findings = append(s.Findings, connectors.OK("anchor url", fmt.Sprintf("the head is posted to %s every %s; hold the chain to what it keeps with tollgate audit verify --anchors", host, a.Every())))
	}
	if a.File != "" {
		s.Findings = append(s.Findings, doctorAnchorFile(ctx, a.File, db)...)
	}
	return s
}

// doctorAnchorFile compares the chain with the newest anchor of file,
// without walking it (service.CompareWithAnchor).
func doctorAnchorFile(ctx context.Context, file string, db *store.DB) []connectors.Finding {
	const check = "anchor file"
	heads, bad, err := anchor.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []connectors.Finding{connectors.Warn(check, file+" does not exist yet: serve creates it with its first anchor (check that its directory is on another filesystem, and writable)")}
	case err != nil:
		return []connectors.Finding{connectors.Fail(check, err.Error())}
	}
	var out []connectors.Finding
	if bad > 0 {
		out = append(out, connectors.Warn(check, fmt.Sprintf("%d lines of %s are not anchors (a write torn by a crash, or an edit)", bad, file)))
	}
	anchors, brk := core.NewAuditAnchors(heads)
	if brk != nil {
		return append(out, connectors.Fail(check, brk.Reason+" (docs/audit.md#after-a-restore)"))
	}
	newest, ok := anchors.Newest()
	switch {
	case !ok:
		return append(out, connectors.OK(check, file+" holds no anchor of a row yet"))
	case db == nil:
		return append(out, connectors.Warn(check, "the database cannot be read: the chain is not compared with the anchors"))
	}
	head, err := db.AuditHead(ctx)
	if err == nil {
		brk, err = service.CompareWithAnchor(ctx, db, newest, head)
	}
	switch {
	case err != nil:
		return append(out, connectors.Warn(check, "cannot read the chain: "+err.Error()))
	case brk != nil:
		return append(out, connectors.Fail(check, brk.Reason+": find out why before anything else (docs/audit.md#after-a-restore)"))
	}
	return append(out, connectors.OK(check, fmt.Sprintf("the chain (row %d) reaches the newest anchor of %s (row %d); tollgate audit verify --anchors holds it to all %d", head.Seq, file, newest.Seq, anchors.Len())))
}
