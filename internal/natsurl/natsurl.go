// Package natsurl keeps the credentials a NATS server's URL may carry
// (nats://<token>@host, nats://user:<password>@host) out of the errors of
// a connection to it.
package natsurl

import (
	"errors"
	"fmt"
	"net/url"
)

// ParseError returns err, a connection's error, without what net/url's
// error quotes when a server URL does not parse: the URL whole, and for an
// escape that does not decode (a password's unescaped '%') its bytes, both
// perhaps of the URL's userinfo, which nats.Connect hands back as they
// are. The URL is named as redact names it. Any other error is returned
// as it is.
func ParseError(err error, redact func(string) string) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	why := ue.Err.Error()
	if _, escape := ue.Err.(url.EscapeError); escape {
		why = "invalid URL escape"
	}
	return fmt.Errorf("%s %s: %s", ue.Op, redact(ue.URL), why)
}
