package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Client timeouts.
const (
	dialTimeout = 5 * time.Second
	callTimeout = 30 * time.Second // a block may wait for the firewall
)

// ServerError is an error the daemon answered with, as opposed to a failure to reach it.
type ServerError string

func (e ServerError) Error() string { return string(e) }

// ErrPermission is the daemon's answer to a peer that is neither root nor its own user.
const ErrPermission ServerError = errPermission

// Client talks to a daemon's control socket. Its methods may be called from several
// goroutines; calls are serialised. The daemon closes a connection idle for
// IdleTimeout, so a Client is meant for a few calls in a row, not to be kept open.
type Client struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

// Dial connects to the control socket at path.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, dialTimeout)
	if err != nil {
		return nil, err
	}
	return &Client{conn: c, r: bufio.NewReader(c)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// List returns the active bans.
func (c *Client) List() ([]Ban, error) {
	resp, err := c.call(request{Cmd: CmdList})
	if err != nil {
		return nil, err
	}
	if resp.Bans == nil {
		resp.Bans = []Ban{}
	}
	return resp.Bans, nil
}

// Status returns the daemon's summary.
func (c *Client) Status() (Status, error) {
	resp, err := c.call(request{Cmd: CmdStatus})
	if err != nil {
		return Status{}, err
	}
	if resp.Status == nil {
		return Status{}, errors.New("control socket: response without status")
	}
	return *resp.Status, nil
}

// Block bans prefix (an address or CIDR) for d: 0 for the daemon's default duration,
// Permanent (or any negative d) for a ban that never expires.
func (c *Client) Block(prefix string, d time.Duration) (Ban, error) {
	p, err := ParsePrefix(prefix)
	if err != nil {
		return Ban{}, err
	}
	resp, err := c.call(request{Cmd: CmdBlock, Prefix: p.String(), Duration: formatDuration(d)})
	if err != nil {
		return Ban{}, err
	}
	if resp.Ban == nil {
		return Ban{}, errors.New("control socket: response without ban")
	}
	return *resp.Ban, nil
}

// Unblock lifts every active ban inside or covering prefix (an address or CIDR) and
// returns the bans lifted; none is not an error.
func (c *Client) Unblock(prefix string) ([]Ban, error) {
	p, err := ParsePrefix(prefix)
	if err != nil {
		return nil, err
	}
	resp, err := c.call(request{Cmd: CmdUnblock, Prefix: p.String()})
	if err != nil {
		return nil, err
	}
	if resp.Bans == nil {
		resp.Bans = []Ban{}
	}
	return resp.Bans, nil
}

// UnblockOrigin lifts every active ban fleet host origin made (AnyOrigin: every
// remote ban) and returns the bans lifted.
func (c *Client) UnblockOrigin(origin string) ([]Ban, error) {
	if _, err := ParseOrigin(origin); err != nil {
		return nil, err
	}
	resp, err := c.call(request{Cmd: CmdUnblock, Origin: origin})
	if err != nil {
		return nil, err
	}
	if resp.Bans == nil {
		resp.Bans = []Ban{}
	}
	return resp.Bans, nil
}

// call sends one request and reads its response. A response with ok false becomes a
// ServerError.
func (c *Client) call(req request) (response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := json.Marshal(req)
	if err != nil {
		return response{}, err
	}
	c.conn.SetDeadline(time.Now().Add(callTimeout))
	defer c.conn.SetDeadline(time.Time{})
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		// A refused peer is answered and hung up on before it writes: prefer the answer.
		if resp, rerr := c.read(); rerr == nil && !resp.OK {
			return response{}, ServerError(resp.Error)
		}
		return response{}, fmt.Errorf("control socket: %w", err)
	}
	resp, err := c.read()
	if err != nil {
		return response{}, err
	}
	if !resp.OK {
		if resp.Error == "" {
			resp.Error = "request failed"
		}
		return response{}, ServerError(resp.Error)
	}
	return resp, nil
}

func (c *Client) read() (response, error) {
	line, err := c.r.ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		if errors.Is(err, io.EOF) {
			return response{}, errors.New("control socket: the daemon closed the connection")
		}
		return response{}, fmt.Errorf("control socket: %w", err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return response{}, fmt.Errorf("control socket: bad response: %w", err)
	}
	return resp, nil
}
