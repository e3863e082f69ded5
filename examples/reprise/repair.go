package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/reprise-backup/reprise"
)

// repairJSON is the output of "repair --json".
type repairJSON struct {
	Fixed        []fixJSON     `json:"fixed"`
	Removed      []string      `json:"removed"`
	Verified     int           `json:"verified"`
	Unrepairable []problemJSON `json:"unrepairable"`
	Seconds      float64       `json:"seconds"`
}

type fixJSON struct {
	Site   string `json:"site"`
	Object string `json:"object"`
	From   string `json:"from"`
	Reason string `json:"reason"`
}

type problemJSON struct {
	Tenant string `json:"tenant,omitempty"`
	Site   string `json:"site,omitempty"`
	Object string `json:"object,omitempty"`
	Error  string `json:"error"`
}

func cmdRepair(ctx context.Context, e *env, args []string) error {
	var cf commonFlags
	var asJSON bool
	fs := newFlagSet(e, commandByName("repair"), &cf)
	fs.BoolVar(&asJSON, "json", false, "print what was done as one JSON object")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErrorf("repair takes no arguments (got %q)", pos)
	}
	sess, err := openRepoHint(ctx, e, &cf, false)
	if err != nil {
		return err
	}
	defer sess.Close()
	start := time.Now()
	rep, rerr := sess.Repo.Repair(ctx)
	if errors.Is(rerr, reprise.ErrSingleSite) {
		return rerr
	}
	if rep == nil {
		return fmt.Errorf("repair could not run: %w", rerr)
	}
	elapsed := time.Since(start)
	if asJSON {
		out := repairJSON{Fixed: []fixJSON{}, Removed: nonNil(rep.Removed), Verified: rep.Verified, Unrepairable: []problemJSON{}, Seconds: elapsed.Seconds()}
		for _, f := range rep.Fixed {
			out.Fixed = append(out.Fixed, fixJSON{Site: f.Site, Object: f.Object, From: f.From, Reason: f.Reason})
		}
		for _, p := range rep.Unrepairable {
			out.Unrepairable = append(out.Unrepairable, problemJSON{Tenant: p.Tenant, Site: p.Site, Object: p.Object, Error: fmt.Sprint(p.Err)})
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else {
		for _, f := range rep.Fixed {
			verb := "replaced"
			if f.Reason == "missing" {
				verb = "copied"
			}
			fmt.Fprintf(e.stdout, "%s %s on site %s from site %s (%s)\n", verb, f.Object, f.Site, f.From, oneLine(f.Reason))
		}
		for _, r := range rep.Removed {
			fmt.Fprintf(e.stdout, "removed %s (the site missed its deletion)\n", r)
		}
		for _, p := range rep.Unrepairable {
			fmt.Fprintf(e.stdout, "unrepairable: %s\n", problemLine(p))
		}
		fmt.Fprintf(e.stdout, "repair: %s in %s\n", repairSummary(rep), formatDuration(elapsed))
	}
	if rerr != nil {
		return fmt.Errorf("repair stopped before the end (what it did is listed above): %w", rerr)
	}
	if n := len(rep.Unrepairable); n > 0 {
		return fmt.Errorf("%d object(s) could not be repaired: no reachable site holds a good copy, or the site is down (run repair again once it is back)", n)
	}
	return nil
}

// repairSummary says what a repair changed, per site.
func repairSummary(rep *reprise.RepairReport) string {
	if len(rep.Fixed) == 0 && len(rep.Removed) == 0 {
		return fmt.Sprintf("nothing changed; %d copies verified, %d unrepairable", rep.Verified, len(rep.Unrepairable))
	}
	bySite := map[string]int{}
	for _, f := range rep.Fixed {
		bySite[f.Site]++
	}
	var sites []string
	for s := range bySite {
		sites = append(sites, s)
	}
	sort.Strings(sites)
	var per []string
	for _, s := range sites {
		per = append(per, fmt.Sprintf("%s %d", s, bySite[s]))
	}
	msg := fmt.Sprintf("%d copies fixed", len(rep.Fixed))
	if len(per) > 0 {
		msg += " (" + strings.Join(per, ", ") + ")"
	}
	return msg + fmt.Sprintf(", %d removed, %d copies verified, %d unrepairable", len(rep.Removed), rep.Verified, len(rep.Unrepairable))
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
