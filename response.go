package credentialsexchange

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/caddyhook/caddyhook/caddyhook"
)

// The OAuth error codes (RFC 6749 §5.2) of the answers the handler makes
// itself rather than passes on from the scripts: a request it refuses (400,
// or 413 for a body over the limit) and a failure of its own or of the
// upstream (500, 502).
const (
	codeInvalidRequest = "invalid_request"
	codeServerError    = "server_error"
)

// oauthStatus is the HTTP status of the answer to an OAuth error the
// scripts produced (caddyhook.Error.Code), which knows nothing of HTTP: the
// client's errors are 400, and any other code is a failure of ours, 500,
// so that a code we do not expect never blames the client.
func oauthStatus(code string) int {
	switch code {
	case caddyhook.CodeInvalidRequest, caddyhook.CodeInvalidScope:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// writeOAuthError sends an RFC 6749 §5.2 error response.
func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": description})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
