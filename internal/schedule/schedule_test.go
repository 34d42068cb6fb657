package schedule

import (
	"testing"
	"time"
)

// A schedule is evaluated in UTC whatever the process's local zone, unless
// it names its own; a string that is not a cron schedule is an error.
func TestParseEvaluatesInUTC(t *testing.T) {
	local := time.Local
	time.Local = time.FixedZone("UTC+5", 5*3600)
	defer func() { time.Local = local }()
	from := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		spec string
		want time.Time
	}{
		{"0 12 * * *", time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)},
		{"@daily", time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)},
		{"CRON_TZ=Etc/GMT-5 0 12 * * *", time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)},
	} {
		s, err := Parse(c.spec)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.spec, err)
		}
		if got := s.Next(from); !got.Equal(c.want) {
			t.Errorf("Parse(%q).Next(%s) = %s, want %s", c.spec, from, got.UTC(), c.want)
		}
	}
	if _, err := Parse("every hour"); err == nil {
		t.Error(`Parse("every hour") succeeded`)
	}
}
