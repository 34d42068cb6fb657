// Package schedule parses the cron schedules of a Pool's spec.backup
// (schedule, verify.schedule): standard five-field cron strings and
// descriptors such as @daily, evaluated in UTC whatever the manager's local
// time zone, as the API documents, unless the string names its own zone
// (CRON_TZ=... or TZ=...).
package schedule

import (
	"strings"

	"github.com/robfig/cron/v3"
)

// Parse parses spec as a cron schedule evaluated in UTC.
func Parse(spec string) (cron.Schedule, error) {
	if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") {
		spec = "CRON_TZ=UTC " + spec
	}
	return cron.ParseStandard(spec)
}
