// Package natsurl keeps the credentials a NATS server's URL may carry
// (nats://<token>@host, nats://user:<password>@host) out of the errors of
// a connection to it.
package natsurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Servers names the servers of urls, the comma-separated server URLs
// nats.Connect takes, without the userinfo each may carry: each from past
// its last '@', which a URL net/url cannot parse has too.
func Servers(urls string) string {
	servers := strings.Split(urls, ",")
	for i, s := range servers {
		at := strings.LastIndex(s, "@")
		if at < 0 {
			continue
		}
		scheme := ""
		if j := strings.Index(s, "://"); j >= 0 && j < at {
			scheme = s[:j+len("://")]
		}
		servers[i] = scheme + s[at+1:]
	}
	return strings.Join(servers, ",")
}

// ParseError returns err, the error of a connection to urls, without
// what net/url's error quotes when a server URL does not parse, which
// nats.Connect hands back as it is: the URL, whole or up to a '#' (one
// in a password), an escape that does not decode (a password's unescaped
// '%'), and the authority's text past its last ':' as a port that is not
// one (a password up to a '/', '?' or '#' in it). It names the servers as
// Servers does, and why in words of its own. Any other error is returned
// as it is.
func ParseError(err error, urls string) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	why := "it does not parse"
	if _, escape := ue.Err.(url.EscapeError); escape {
		why = "invalid URL escape"
	}
	return fmt.Errorf("%s %s: %s (a user name, password or token holding '%%', '/', '?', '#', '@' or a space is written URL-escaped, as %%XX)",
		ue.Op, Servers(urls), why)
}
