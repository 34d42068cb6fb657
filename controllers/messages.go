package controllers

import (
	"fmt"
	"strings"
)

// truncateList joins items, naming at most n of them.
func truncateList(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
