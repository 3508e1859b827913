package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/internal/bundle"
)

// withBundleFlag gives `audit verify` its --bundle FILE mode: check an
// evidence bundle offline (no database) instead of the live chain, its
// signature against --public-key when given.
func withBundleFlag(cmd *cobra.Command, stdout io.Writer) *cobra.Command {
	var path string
	var keyFiles []string
	cmd.Flags().StringVar(&path, "bundle", "", "verify an evidence bundle (tar.gz from GET /api/v1/reports/reconciliation/{id}/bundle) offline instead of the database")
	cmd.Flags().StringArrayVar(&keyFiles, "public-key", nil, "with --bundle: a PEM file of the public keys the bundle must be signed with (GET /api/v1/evidence/public-key?format=pem; repeat for more files); without it the bundle's origin is not checked")
	live := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if path == "" {
			if len(keyFiles) > 0 {
				return &exitError{code: 2, err: errors.New("--public-key checks an evidence bundle's signature: give --bundle FILE too")}
			}
			return live(c, args)
		}
		var keys []bundle.PublicKey
		for _, f := range keyFiles {
			k, err := bundle.LoadPublicKeys(f)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--public-key: %w", err)}
			}
			keys = append(keys, k...)
		}
		return verifyBundleFile(path, keys, stdout)
	}
	return cmd
}

// verifyBundleFile checks a bundle and names the first mismatch (exit 1),
// then says what is known of who made it.
func verifyBundleFile(path string, keys []bundle.PublicKey, stdout io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer f.Close()
	res, err := bundle.Verify(f, keys...)
	var mm *bundle.Mismatch
	switch {
	case errors.As(err, &mm) && mm.File == bundle.SignatureName:
		return &exitError{code: 1, err: fmt.Errorf("bundle NOT AUTHENTIC: %s: %s", mm.File, mm.Reason)}
	case errors.As(err, &mm):
		return &exitError{code: 1, err: fmt.Errorf("bundle BROKEN: %s: %s", mm.File, mm.Reason)}
	case err != nil:
		return &exitError{code: 1, err: fmt.Errorf("bundle unreadable: %w", err)}
	}
	fmt.Fprintf(stdout, "bundle intact: report %s, %d files and %d audit rows verified; MANIFEST.json sha256 %s\n",
		res.Manifest.ReportID, res.Files, res.AuditRows, res.ManifestSH)
	switch res.Origin {
	case bundle.OriginVerified:
		fmt.Fprintf(stdout, "bundle signed by key %s, one of the public keys given: the server holding that key made it\n", res.KeyFingerprint)
	case bundle.OriginNotChecked:
		fmt.Fprintf(stdout, "warning: the bundle's origin was NOT checked: it names key %s, but no --public-key was given; anyone can make a bundle whose hashes agree (fetch the key with GET /api/v1/evidence/public-key?format=pem)\n", res.KeyFingerprint)
	default:
		fmt.Fprintln(stdout, "warning: the bundle's origin was NOT checked: it is unsigned (its server had no evidence.signing_key_file, or it was made before bundles were signed); its hashes show it unchanged since its manifest was written, not who wrote it")
	}
	if h := res.Manifest.AuditHead; h != nil {
		fmt.Fprintf(stdout, "audit head when the bundle was made: %d:%s (check the live chain with: tollgate audit verify --expect-head %d:%s)\n", h.Seq, h.Hash, h.Seq, h.Hash)
	}
	return nil
}
