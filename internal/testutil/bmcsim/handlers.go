package bmcsim

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"time"
)

const (
	systemsPath = "/redfish/v1/Systems"
	// registry prefixes MessageIds from the DMTF Base message registry.
	registry = "Base.1.8."
)

// resetTypes are the ResetType values the emulator implements and
// advertises.
var resetTypes = []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart"}

// handler routes the Redfish resources behind fault injection.
func (b *BMC) handler() http.Handler {
	mux := http.NewServeMux()
	// DSP0266 requires the service root to answer without authentication,
	// so clients can discover the service before logging in.
	mux.HandleFunc("GET /redfish/v1", b.serveRoot)
	mux.HandleFunc("GET /redfish/v1/{$}", b.serveRoot)
	mux.HandleFunc("GET "+systemsPath, b.requireAuth(b.serveSystems))
	mux.HandleFunc("GET "+systemsPath+"/{id}", b.requireAuth(b.serveSystem))
	mux.HandleFunc("POST "+systemsPath+"/{id}/Actions/ComputerSystem.Reset", b.requireAuth(b.serveReset))
	mux.HandleFunc("/", b.requireAuth(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "ResourceMissingAtURI",
			fmt.Sprintf("The resource at the URI '%s' was not found.", r.URL.Path))
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.injectFault(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// injectFault counts the request and applies the configured faults. It
// returns true if it answered (or dropped) the request.
func (b *BMC) injectFault(w http.ResponseWriter, r *http.Request) bool {
	b.mu.Lock()
	b.requests++
	unreachable, latency, status := b.unreachable, b.latency, b.failing
	if !unreachable && status == 0 && b.failNext > 0 {
		b.failNext--
		status = b.failNextStatus
	}
	b.mu.Unlock()

	if unreachable {
		dropConnection(w)
		return true
	}
	if latency > 0 {
		timer := time.NewTimer(latency)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done(): // the client gave up
			// Returning normally would make net/http send an empty 200,
			// which a client cancelling at that moment can still receive.
			dropConnection(w)
			return true
		case <-b.done: // Close should not wait out the latency
			dropConnection(w)
			return true
		}
	}
	if status != 0 {
		writeError(w, status, "GeneralError",
			fmt.Sprintf("bmcsim: injected fault, answering with status %d.", status))
		return true
	}
	return false
}

// dropConnection closes the client's connection without writing anything.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// Not hijackable (HTTP/2): this makes the server reset the stream.
	panic(http.ErrAbortHandler)
}

// requireAuth rejects requests without the configured basic-auth credentials.
func (b *BMC) requireAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		b.mu.Lock()
		valid := ok && user == b.username && pass == b.password
		if !valid {
			b.authFailures++
		}
		b.mu.Unlock()
		if !valid {
			w.Header().Set("WWW-Authenticate", `Basic realm="bmcsim"`)
			writeError(w, http.StatusUnauthorized, "NoValidSession",
				"There is no valid session established with the implementation.")
			return
		}
		next(w, r)
	}
}

func (b *BMC) serveRoot(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":      "/redfish/v1/",
		"@odata.type":    "#ServiceRoot.v1_5_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": "1.6.0",
		"Systems":        map[string]string{"@odata.id": systemsPath},
	})
}

func (b *BMC) serveSystems(w http.ResponseWriter, _ *http.Request) {
	b.mu.Lock()
	ids := make([]string, 0, len(b.systems))
	for id := range b.systems {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	slices.Sort(ids) // stable output for tests
	members := make([]map[string]string, 0, len(ids))
	for _, id := range ids {
		members = append(members, map[string]string{"@odata.id": systemsPath + "/" + id})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":           systemsPath,
		"@odata.type":         "#ComputerSystemCollection.ComputerSystemCollection",
		"Name":                "Computer System Collection",
		"Members@odata.count": len(members),
		"Members":             members,
	})
}

func (b *BMC) serveSystem(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b.mu.Lock()
	s, ok := b.systems[id]
	var state PowerState
	if ok {
		state = s.current(time.Now())
	}
	b.mu.Unlock()
	if !ok {
		writeSystemNotFound(w, r)
		return
	}
	path := systemsPath + "/" + id
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":   path,
		"@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem",
		"Id":          id,
		"Name":        "System " + id,
		"PowerState":  state,
		"Actions": map[string]any{
			"#ComputerSystem.Reset": map[string]any{
				"target":                            path + "/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": resetTypes,
			},
		},
	})
}

func (b *BMC) serveReset(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b.mu.Lock()
	_, ok := b.systems[id]
	b.mu.Unlock()
	if !ok {
		writeSystemNotFound(w, r)
		return
	}
	// Real BMCs reject action bodies that are not declared as JSON; this
	// catches clients that forget the header.
	if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "GeneralError",
			"The request Content-Type must be application/json.")
		return
	}
	var req struct {
		ResetType *string `json:"ResetType"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "MalformedJSON",
			"The request body submitted was malformed JSON and could not be parsed by the receiving service.")
		return
	}
	if req.ResetType == nil {
		writeError(w, http.StatusBadRequest, "ActionParameterMissing",
			"The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.")
		return
	}
	if !slices.Contains(resetTypes, *req.ResetType) {
		writeError(w, http.StatusBadRequest, "ActionParameterValueNotInList",
			fmt.Sprintf("The value '%s' for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values.", *req.ResetType))
		return
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.systems[id] // looked up again: AddSystem may have replaced it; systems are never removed
	now := time.Now()
	switch *req.ResetType {
	case "On", "ForceRestart":
		s.state, s.offAt = PowerOn, time.Time{}
	case "ForceOff":
		s.forceOffs++
		if !b.ignoreForceOff {
			b.powerOff(s, now)
		}
	case "GracefulShutdown":
		b.powerOff(s, now)
	}
	w.WriteHeader(http.StatusNoContent)
}

// powerOff starts turning s off; b.mu must be held. A system already off or
// powering off keeps its state and deadline, as repeated presses of a power
// button do not restart the shutdown.
func (b *BMC) powerOff(s *system, now time.Time) {
	switch state := s.current(now); {
	case state == PowerOff || state == PoweringOff:
	case b.offDelay <= 0:
		s.state, s.offAt = PowerOff, time.Time{}
	default:
		s.state, s.offAt = PoweringOff, now.Add(b.offDelay)
	}
}

func writeSystemNotFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "ResourceMissingAtURI",
		fmt.Sprintf("The resource at the URI '%s' was not found.", r.URL.Path))
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeError answers with a DSP0266 error body. Like many BMCs, it puts a
// generic code on top and the specific message in @Message.ExtendedInfo.
func writeError(w http.ResponseWriter, status int, messageID, message string) {
	writeJSON(w, status, map[string]any{
		"error": map[string]any{
			"code":    registry + "GeneralError",
			"message": "A general error has occurred. See ExtendedInfo for more information.",
			"@Message.ExtendedInfo": []map[string]string{{
				"@odata.type": "#Message.v1_1_1.Message",
				"MessageId":   registry + messageID,
				"Message":     message,
				"Severity":    "Critical",
				"Resolution":  "None",
			}},
		},
	})
}
