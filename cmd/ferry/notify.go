package main

import (
	"fmt"
	"net"
	"os"
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
	default:
		msg = "STATUS=" + status
	}
	n.send(msg)
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
