package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/mapping"
)

func newMappingCmd(stdout io.Writer) *cobra.Command {
	m := &cobra.Command{Use: "mapping", Short: "Work with mapping profiles"}
	m.AddCommand(&cobra.Command{
		Use:   "test PROFILE PAYLOAD",
		Short: "Apply a mapping profile (a YAML file, or a built-in profile's name) to a payload file; exit 1 on errors",
		Args:  cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			src, err := os.ReadFile(args[0])
			if err != nil {
				b, ferr := fs.ReadFile(mappings.FS, args[0]+".yaml")
				if ferr != nil {
					return fmt.Errorf("profile %s: not a file and not a built-in profile: %w", args[0], err)
				}
				src = b
			}
			p, err := mapping.Parse(src)
			if err != nil {
				return err
			}
			c, err := mapping.Compile(p)
			if err != nil {
				return err
			}
			payload, err := os.ReadFile(args[1])
			if err != nil {
				return fmt.Errorf("payload: %w", err)
			}
			res := c.Apply(payload)
			if err := printJSON(stdout, res); err != nil {
				return err
			}
			if len(res.Errors) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d mapping errors", len(res.Errors))}
			}
			return nil
		},
	})
	return m
}
