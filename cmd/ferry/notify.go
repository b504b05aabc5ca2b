package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// notifier speaks systemd's sd_notify protocol when $NOTIFY_SOCKET is set.
type notifier struct {
	socket string
	logger *zap.Logger
}

func newNotifier(logger *zap.Logger) *notifier {
	return &notifier{socket: os.Getenv("NOTIFY_SOCKET"), logger: logger}
}

// notify maps agent lifecycle states to sd_notify messages.
func (n *notifier) notify(state, status string) {
	var msg string
	switch state {
	case "ready":
		msg = "READY=1\nSTATUS=" + status
	case "reloading":
		msg = fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=%s", monotonicUsec(), status)
	case "stopping":
		msg = "STOPPING=1\nSTATUS=" + status
	case "extend":
		msg = fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d\nSTATUS=%s", (15 * time.Second).Microseconds(), status)
	default:
		msg = "STATUS=" + status
	}
	n.send(msg)
}

// watchdogInterval returns how often to ping systemd's watchdog (half of
// WATCHDOG_USEC), or 0 when the watchdog is off or meant for another
// process.
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// watchdog sends WATCHDOG=1 every interval while alive() succeeds within
// the interval; a stuck ingest path stops the pings and systemd restarts
// Ferry.
func (n *notifier) watchdog(ctx context.Context, interval time.Duration, alive func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, interval)
		err := alive(cctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				n.logger.Error("Health check failed; not pinging the systemd watchdog", zap.Error(err))
			}
			continue
		}
		n.send("WATCHDOG=1")
	}
}

func (n *notifier) send(msg string) {
	if n.socket == "" {
		return
	}
	addr := &net.UnixAddr{Name: n.socket, Net: "unixgram"}
	if addr.Name[0] == '@' {
		addr.Name = "\x00" + addr.Name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		n.logger.Warn("sd_notify failed", zap.Error(err))
		return
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		n.logger.Warn("sd_notify failed", zap.Error(err))
	}
}
