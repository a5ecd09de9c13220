// Package natsurl keeps the credentials a NATS server's URL may carry
// (nats://<token>@host, nats://user:<password>@host) out of the errors of
// a connection to it.
//
// A user name, password or token may hold a ',' or an '@' of its own,
// unescaped: nats.go splits a list of URLs at every ',', and a URL's
// userinfo ends at its last '@', so neither tells where a userinfo ends
// in a list. Anything before a list's last '@' may be one, and is not
// named, but the scheme the list starts with.
package natsurl

import (
	"errors"
	"fmt"
	"iter"
	"net/url"
	"strings"
)

// Servers names the servers of urls, the comma-separated server URLs
// nats.Connect takes, without the userinfo any may carry: a list with
// an '@' from past its last one, after the scheme it starts with. A list
// that names several servers, one with userinfo, is named by those past
// it alone.
func Servers(urls string) string {
	at := strings.LastIndex(urls, "@")
	if at < 0 {
		return urls
	}
	return scheme(urls[:at]) + urls[at+1:]
}

// scheme is the scheme s starts with, "://" included, when it is one
// nats.go connects with, and "" otherwise: the text before a "://" of
// another kind may be a token's, or a user name's and a password's.
func scheme(s string) string {
	name, _, ok := strings.Cut(strings.TrimSpace(s), "://")
	if !ok {
		return ""
	}
	for _, known := range []string{"nats", "tls", "ws", "wss"} {
		if strings.EqualFold(name, known) {
			return name + "://"
		}
	}
	return ""
}

// ConnectError returns err, the error of a connection to urls, without
// what of urls' userinfo it may quote. net/url's error, when a server
// URL does not parse, nats.Connect hands back as it is: it quotes the
// URL, whole or up to a '#' (one in a password), an escape that does not
// decode (a password's unescaped '%'), and the authority's text past its
// last ':' as a port that is not one (a password up to a '/', '?' or
// '#' in it, or up to a ','); it names the servers as Servers does, and
// why in words of its own. A dial's error names the host and port it
// dialed, which nats.go may have cut from a userinfo at a ',' (the token
// of nats://<tok,en>@host as a host, the user name and the password of
// nats://user:<1234,5>@host as a host and a port): one that names a
// server of those before urls' last '@' is not quoted. Any other error
// is returned as it is.
func ConnectError(err error, urls string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		why := "it does not parse"
		if _, escape := ue.Err.(url.EscapeError); escape {
			why = "invalid URL escape"
		}
		return fmt.Errorf("%s %s: %s (a user name, password or token holding '%%', ',', '/', '?', '#', '@' or a space is written URL-escaped, as %%XX)",
			ue.Op, Servers(urls), why)
	}
	if namesCut(err.Error(), urls) {
		return errors.New("a server's error is not quoted: it names a host or a port that may be part of a user name, password or token (one holding ',' is written URL-escaped, as %2C)")
	}
	return err
}

// namesCut reports whether msg names the host or the port of a server
// of urls that may be cut from a userinfo (Split).
func namesCut(msg, urls string) bool {
	for s, cut := range Split(urls) {
		if !cut {
			return false
		}
		if !strings.Contains(s, "://") {
			s = "nats://" + s // as nats.go reads it
		}
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		if h := u.Hostname(); h != "" && namesWord(msg, h) || u.Port() != "" && namesWord(msg, ":"+u.Port()) {
			return true
		}
	}
	return false
}

// Split yields the server URLs of urls as nats.go splits them (at every
// ',', trimmed, the empty ones left out), and whether each may be cut
// from a userinfo: one that ends before urls' last '@' may be all, or
// the start, of a password or a token that holds a ','; and one whose
// '@' net/url finds past the authority, which a '/', '?' or '#' of a
// password or a token ended, has its host and port cut from it
// (nats://<tok#en>@host dials "tok"). Such a one is not to be named.
func Split(urls string) iter.Seq2[string, bool] {
	return func(yield func(string, bool) bool) {
		at := strings.LastIndex(urls, "@")
		start := 0
		for s := range strings.SplitSeq(urls, ",") {
			end := start + len(s)
			start = end + len(",")
			if s = strings.TrimSpace(s); s != "" && !yield(s, end <= at || atPastAuthority(s)) {
				return
			}
		}
	}
}

// atPastAuthority reports whether the server URL s, as nats.go reads it,
// holds an '@' past its authority. One that does not parse is never
// dialed: nats.Connect fails on it (ConnectError).
func atPastAuthority(s string) bool {
	if !strings.Contains(s, "@") {
		return false
	}
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	return err == nil && strings.Contains(u.Opaque+u.Path+u.RawQuery+u.Fragment, "@")
}

// namesWord reports whether msg holds w other than within a longer name
// or number ("a" in "lookup a", not in "failed"; ":12" in "1.2.3.4:12",
// not in "1.2.3.4:123").
func namesWord(msg, w string) bool {
	for i := 0; ; {
		j := strings.Index(msg[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		if (start == 0 || !nameByte(msg[start-1]) || !nameByte(w[0])) && (end == len(msg) || !nameByte(msg[end]) || !nameByte(w[len(w)-1])) {
			return true
		}
		i = start + 1
	}
}

// nameByte reports whether c may be part of a host's name or a port.
func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}
