package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sessionCookie holds a signed-in operator's name and expiry, signed with
// a key the Dashboard draws at start (so a restart signs everyone out).
const sessionCookie = "pgoutbox_session"

// operator is who made a request, as the audit log records it.
type operator struct {
	Name string // "" when not authenticated
	Via  string // bearer, basic or session
}

// authenticate returns the operator a request's credentials name, if any
// are valid: a bearer token, basic auth, or the session cookie.
func (d *Dashboard) authenticate(r *http.Request) operator {
	if h := r.Header.Get("Authorization"); h != "" {
		if token, ok := strings.CutPrefix(h, "Bearer "); ok {
			if name, ok := d.checkToken("", token); ok {
				return operator{Name: name, Via: "bearer"}
			}
			return operator{}
		}
		if user, pass, ok := r.BasicAuth(); ok {
			if name, ok := d.checkToken(user, pass); ok {
				return operator{Name: name, Via: "basic"}
			}
		}
		return operator{}
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if name, ok := d.checkSession(c.Value, time.Now()); ok {
			return operator{Name: name, Via: "session"}
		}
	}
	return operator{}
}

// checkToken compares token with every operator's (or only name's, when
// given) in constant time: digests of equal length, every one compared.
func (d *Dashboard) checkToken(name, token string) (string, bool) {
	got := sha256.Sum256([]byte(token))
	found := ""
	match := 0
	for _, c := range d.cfg.tokens {
		eq := subtle.ConstantTimeCompare(got[:], c.digest[:])
		if name != "" && c.name != name {
			eq = 0
		}
		if eq == 1 && match == 0 {
			found = c.name
		}
		match |= eq
	}
	return found, match == 1
}

func (d *Dashboard) sign(parts ...string) string {
	mac := hmac.New(sha256.New, d.key)
	for _, p := range parts {
		mac.Write([]byte(p))
		mac.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// newSession is the cookie value for name, valid until expires.
func (d *Dashboard) newSession(name string, expires time.Time) string {
	n := base64.RawURLEncoding.EncodeToString([]byte(name))
	exp := strconv.FormatInt(expires.Unix(), 10)
	return n + "." + exp + "." + d.sign("session", n, exp)
}

func (d *Dashboard) checkSession(v string, now time.Time) (string, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "", false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(d.sign("session", parts[0], parts[1]))) {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || now.Unix() >= exp {
		return "", false
	}
	name, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", false
	}
	// The operator may have been removed since: the session ends with them.
	for _, c := range d.cfg.tokens {
		if c.name == string(name) {
			return c.name, true
		}
	}
	return "", false
}

// notice is a message shown after a write (the redirect carries it). It is
// signed so that a crafted link cannot make the dashboard say anything.
func (d *Dashboard) noticeSig(text string) string { return d.sign("notice", text) }

func (d *Dashboard) checkNotice(text, sig string) bool {
	return text != "" && hmac.Equal([]byte(sig), []byte(d.noticeSig(text)))
}

func (d *Dashboard) setSession(w http.ResponseWriter, r *http.Request, name string) {
	expires := time.Now().Add(SessionLifetime)
	// Secure only over TLS: outboxctl serve speaks plain HTTP on loopback.
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // HttpOnly and SameSite=Strict always; Secure whenever the request came over TLS
		Name: sessionCookie, Value: d.newSession(name, expires), Path: d.cookiePath(),
		Expires: expires, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func (d *Dashboard) clearSession(w http.ResponseWriter, r *http.Request) {
	// Secure only over TLS: outboxctl serve speaks plain HTTP on loopback.
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // HttpOnly and SameSite=Strict always; Secure whenever the request came over TLS
		Name: sessionCookie, Value: "", Path: d.cookiePath(), MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func (d *Dashboard) cookiePath() string {
	if d.cfg.BasePath == "" {
		return "/"
	}
	return d.cfg.BasePath + "/"
}
