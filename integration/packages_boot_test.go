package integration

// The boot test: the .deb (and the .rpm, with its scriptlets) installed in
// a Debian bookworm system booted with systemd-nspawn, driven with
// systemctl through nsenter, fed and read over the container's own
// loopback.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The debootstrap root is cached here and rebuilt only when missing or
// made with another package list (recorded in the .stamp file beside it).
// Each run boots a copy. procps (the deb's dependency) is preinstalled so
// that apt installs the local deb offline; rpm runs the rpm's scriptlets.
const (
	bootRootCache    = "/var/cache/ferry-test/bookworm-root"
	bootRootPackages = "systemd,systemd-sysv,dbus,procps,ca-certificates,rpm"
)

func debianMirror() string {
	if m := os.Getenv("FERRY_DEBIAN_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

// bookwormRoot returns the cached root, making it first if needed.
func bookwormRoot(t *testing.T) string {
	t.Helper()
	stamp := bootRootCache + ".stamp"
	if b, err := os.ReadFile(stamp); err == nil && string(b) == bootRootPackages {
		if _, err := os.Stat(filepath.Join(bootRootCache, "usr/lib/systemd/systemd")); err == nil {
			return bootRootCache
		}
	}
	t.Logf("making %s with debootstrap (1-2 minutes, once)", bootRootCache)
	tmp := bootRootCache + ".tmp"
	for _, p := range []string{stamp, tmp, bootRootCache} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(bootRootCache), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run(t, "debootstrap", "--variant=minbase", "--include="+bootRootPackages, "bookworm", tmp, debianMirror())
	if err := os.Rename(tmp, bootRootCache); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stamp, []byte(bootRootPackages), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap took %s", time.Since(start).Round(time.Second))
	return bootRootCache
}

// container is a booted systemd-nspawn container.
type container struct {
	t      *testing.T
	root   string
	nspawn *exec.Cmd
	exited chan struct{}
	leader int    // the container's PID 1, as seen from the host
	netns  string // its network namespace
	log    string
}

// bootContainer boots a copy of root with its own network namespace
// (only a loopback, so Ferry's default ports cannot clash with the
// host's) and waits until systemd reports the system running.
func bootContainer(t *testing.T, cache string) *container {
	t.Helper()
	dir := t.TempDir()
	c := &container{t: t, root: filepath.Join(dir, "root"), log: filepath.Join(dir, "nspawn.log"), exited: make(chan struct{})}
	run(t, "cp", "-a", "--reflink=auto", cache, c.root)
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	name := fmt.Sprintf("ferry-test-%d", os.Getpid())
	c.nspawn = exec.Command("systemd-nspawn", "-D", c.root, "-M", name, "--register=no", "--keep-unit",
		"--boot", "--private-network", "--console=passive")
	c.nspawn.Stdout, c.nspawn.Stderr = logf, logf
	c.nspawn.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.nspawn.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.nspawn.Wait(); close(c.exited) }()
	t.Cleanup(c.shutdown)

	deadline := time.Now().Add(60 * time.Second)
	for c.leader == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no container init after 60s:\n%s", c.nspawnLog())
		}
		select {
		case <-c.exited:
			t.Fatalf("systemd-nspawn exited:\n%s", c.nspawnLog())
		case <-time.After(100 * time.Millisecond):
		}
		c.leader = containerInit(c.nspawn.Process.Pid)
	}
	c.netns = fmt.Sprintf("/proc/%d/ns/net", c.leader)
	for {
		out, _ := c.exec("systemctl", "is-system-running")
		state := strings.TrimSpace(out)
		if state == "running" {
			break
		}
		if state == "degraded" {
			failed, _ := c.exec("systemctl", "--failed", "--no-pager")
			t.Logf("container booted degraded:\n%s", failed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container not running after 60s (state %q):\n%s", state, c.nspawnLog())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c
}

// containerInit finds the child of systemd-nspawn that is PID 1 in its
// own PID namespace.
func containerInit(nspawn int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		var ppid int
		var nspid []string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
				nspid = strings.Fields(v)
			}
		}
		if ppid == nspawn && len(nspid) == 2 && nspid[1] == "1" {
			return pid
		}
	}
	return 0
}

func (c *container) nspawnLog() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

// shutdown powers the container off (systemd-nspawn turns SIGTERM into a
// clean poweroff), killing it if that takes more than 30s.
func (c *container) shutdown() {
	if c.nspawn.Process == nil {
		return
	}
	_ = c.nspawn.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.t.Logf("container did not power off within 30s; killing it")
		_ = c.nspawn.Process.Kill()
		<-c.exited
	}
}

// exec runs a command inside the container, in all its namespaces, with
// a clean environment; it returns stdout and stderr together.
func (c *container) exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := append([]string{"-t", strconv.Itoa(c.leader), "-m", "-u", "-i", "-n", "-p", "-C", "--",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	return string(out), err
}

// must runs a command inside the container and fails the test on error.
func (c *container) must(args ...string) string {
	c.t.Helper()
	out, err := c.exec(args...)
	if err != nil {
		c.t.Fatalf("in container: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// prop returns one property of ferry.service.
func (c *container) prop(name string) string {
	c.t.Helper()
	return strings.TrimSpace(c.must("systemctl", "show", "-p", name, "--value", "ferry.service"))
}

// file returns the path of a container file on the host.
func (c *container) file(path string) string { return filepath.Join(c.root, path) }

func (c *container) exists(path string) bool {
	_, err := os.Lstat(c.file(path))
	return err == nil
}

// copyIn copies a host file into the container's /var/tmp/ferry-test,
// readable by apt's unprivileged _apt user, and returns its path there.
func (c *container) copyIn(src string) string {
	c.t.Helper()
	dir := c.file("/var/tmp/ferry-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)), b, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return "/var/tmp/ferry-test/" + filepath.Base(src)
}

// inNetns runs f on an OS thread that joined the container's network
// namespace: sockets f creates belong to that namespace and keep working
// from any thread. The thread is never unlocked, so the runtime discards
// it when the goroutine ends.
func inNetns(netns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", netns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// sinkIn is newSink listening on addr in the container's loopback.
func (c *container) sinkIn(addr string) *sink {
	c.t.Helper()
	s := &sink{t: c.t, behave: func(int) int { return 0 }, got: map[string][]int64{}, notify: make(chan struct{}, 1)}
	err := inNetns(c.netns, func() (err error) {
		s.ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		c.t.Fatalf("sink in container on %s: %v", addr, err)
	}
	s.addr = s.ln.Addr().String()
	s.srv = &http.Server{Handler: s}
	go s.srv.Serve(s.ln)
	c.t.Cleanup(s.down)
	return s
}

// httpClient connects to addresses in the container's network namespace.
func (c *container) httpClient() *http.Client {
	dial := func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
		err = inNetns(c.netns, func() (err error) {
			conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial}}
}

// waitFerry waits until ferry.service is active with a main PID other
// than old, and Ferry answers /-/ready; it returns the main PID.
func (c *container) waitFerry(old string, client *http.Client) string {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		pid := c.prop("MainPID")
		if c.prop("ActiveState") == "active" && pid != "0" && pid != old {
			resp, err := client.Get("http://127.0.0.1:9201/-/ready")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return pid
				}
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("ferry.service not active and ready with a new main PID (old %s) after 60s:\n%s", old,
				c.must("systemctl", "status", "--no-pager", "ferry.service"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPackageBoot installs the deb in a booted Debian bookworm: the
// service starts as the ferry user with its state in /var/lib/ferry and
// forwards what it receives; reload picks up a new endpoint; kill -9
// restarts it without losing an acknowledged sample; an upgrade restarts
// it and keeps the edited configuration; remove keeps configuration and
// data, purge deletes them. Then the rpm's scriptlets: install, upgrade
// and erase with rpm in the same system.
func TestPackageBoot(t *testing.T) {
	needPackages(t)
	begin := time.Now()
	deb := pkgFile(t, distDir(), "ferry_*_amd64.deb")
	rpmFile := pkgFile(t, distDir(), "ferry-*.x86_64.rpm")
	_, version := debVersion(t, deb)

	// A newer build for the upgrades, built while the container boots.
	newer := version + "+upgrade"
	if strings.Contains(version, "+") {
		newer = version + ".upgrade"
	}
	upDir := t.TempDir()
	built := make(chan error, 1)
	go func() {
		built <- buildPackages(upDir, []string{"ARCHES=amd64", "FERRY_PKG_VERSION=" + newer})
	}()
	newerPackages := func() (string, string) {
		t.Helper()
		if err := <-built; err != nil {
			t.Fatal(err)
		}
		return pkgFile(t, upDir, "ferry_*_amd64.deb"), pkgFile(t, upDir, "ferry-*.x86_64.rpm")
	}

	c := bootContainer(t, bookwormRoot(t))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.exec("journalctl", "--no-pager", "-n", "300", "-u", "ferry.service")
			t.Logf("journal of ferry.service:\n%s", out)
		}
	})
	t.Logf("container booted after %s", time.Since(begin).Round(time.Millisecond))
	client := c.httpClient()
	defer client.CloseIdleConnections()
	// The shipped configuration forwards to 127.0.0.1:9090.
	prom := c.sinkIn("127.0.0.1:9090")
	p := newPusher("127.0.0.1:9201", 50)
	p.client = client
	ts := int64(1)
	pushAndCheck := func(rounds int64, sinks ...*sink) {
		t.Helper()
		p.pushRounds(t, ts, ts+rounds-1, 25)
		ts += rounds
		acked, _ := p.snapshot()
		for _, s := range sinks {
			s.waitDelivered(acked, 60*time.Second)
		}
	}

	// Install: user, enabled, started, ready, forwarding.
	out := c.must("apt-get", "install", "-y", "--no-install-recommends", c.copyIn(deb))
	t.Logf("apt-get install:\n%s", lastLines(out, 8))
	pid := c.waitFerry("0", client)
	if got := strings.TrimSpace(c.must("systemctl", "is-enabled", "ferry.service")); got != "enabled" {
		t.Errorf("is-enabled = %q", got)
	}
	status := c.prop("StatusText")
	t.Logf("StatusText=%s", status)
	if status == "" {
		t.Errorf("ferry.service has no StatusText: Ferry's sd_notify STATUS= did not arrive")
	}
	if u := c.prop("User"); u != "ferry" {
		t.Errorf("User=%q", u)
	}
	if got := strings.TrimSpace(c.must("ps", "-o", "user=", "-p", pid)); got != "ferry" {
		t.Errorf("ferry runs as %q, want ferry", got)
	}
	if got := strings.TrimSpace(c.must("stat", "-c", "%U:%G %a", "/var/lib/ferry")); got != "ferry:ferry 750" {
		t.Errorf("/var/lib/ferry is %q, want ferry:ferry 750", got)
	}
	if got := strings.TrimSpace(c.must("ferry", "version")); got != "ferry "+version {
		t.Errorf("ferry version = %q, want %q", got, "ferry "+version)
	}
	pushAndCheck(20, prom)
	if !c.exists("/var/lib/ferry/wal") {
		t.Errorf("no /var/lib/ferry/wal: Ferry did not use $STATE_DIRECTORY")
	}

	// Reload with a second endpoint: same process, both endpoints fed.
	second := c.sinkIn("127.0.0.1:9091")
	cfg, err := os.ReadFile(c.file("/etc/ferry/ferry.yml"))
	if err != nil {
		t.Fatal(err)
	}
	edited := string(cfg) + "  - name: second\n    url: http://127.0.0.1:9091/api/v1/write\n"
	if err := os.WriteFile(c.file("/etc/ferry/ferry.yml"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must("systemctl", "reload", "ferry.service")
	pushAndCheck(10, prom, second)
	if got := c.prop("MainPID"); got != pid {
		t.Errorf("reload changed the main PID %s -> %s", pid, got)
	}

	// WatchdogSec=30s: Ferry pings (every 15s), so systemd records a new
	// watchdog time stamp and never kills it. (Read after the reload,
	// which may reset the time stamp itself.)
	watchdog := c.prop("WatchdogTimestampMonotonic")
	waitUntil(t, 25*time.Second, func() bool { return c.prop("WatchdogTimestampMonotonic") != watchdog })
	if got := c.prop("MainPID"); got != pid {
		t.Errorf("the main PID changed %s -> %s without a restart", pid, got)
	}

	// kill -9 under load: systemd restarts Ferry and every acknowledged
	// sample arrives at both endpoints.
	restarts := c.prop("NRestarts")
	ctx, cancel := context.WithCancel(context.Background())
	done := p.run(ctx, ts, 25)
	_, before := p.snapshot()
	waitUntil(t, 30*time.Second, func() bool { _, n := p.snapshot(); return n >= before+2000 })
	c.must("kill", "-9", pid)
	pid = c.waitFerry(pid, client)
	_, mid := p.snapshot()
	waitUntil(t, 30*time.Second, func() bool { _, n := p.snapshot(); return n >= mid+2000 })
	cancel()
	ts = <-done + 1
	if got := c.prop("NRestarts"); got == restarts {
		t.Errorf("NRestarts stayed %s after kill -9", got)
	}
	acked, n := p.snapshot()
	prom.waitDelivered(acked, 60*time.Second)
	second.waitDelivered(acked, 60*time.Second)
	t.Logf("kill -9: %d samples acknowledged, all delivered to both endpoints (statuses %v)", n, p.status)

	// Upgrade: restarted on the new binary, edited configuration kept.
	newDeb, newRPM := newerPackages()
	c.must("apt-get", "install", "-y", "--no-install-recommends", c.copyIn(newDeb))
	c.waitFerry(pid, client)
	if got := strings.TrimSpace(c.must("ferry", "version")); got != "ferry "+newer {
		t.Errorf("after upgrade: ferry version = %q, want %q", got, "ferry "+newer)
	}
	if got, _ := os.ReadFile(c.file("/etc/ferry/ferry.yml")); string(got) != edited {
		t.Errorf("the upgrade changed the edited /etc/ferry/ferry.yml:\n%s", got)
	}
	if c.exists("/etc/ferry/ferry.yml.dpkg-dist") || c.exists("/etc/ferry/ferry.yml.dpkg-new") {
		t.Errorf("the upgrade left a .dpkg-dist or .dpkg-new configuration")
	}
	pushAndCheck(10, prom, second)

	// Remove: stopped, binary gone, configuration and data kept.
	c.must("apt-get", "remove", "-y", "ferry")
	if out, _ := c.exec("systemctl", "is-active", "ferry.service"); strings.TrimSpace(out) == "active" {
		t.Errorf("ferry.service still active after apt-get remove")
	}
	if c.exists("/usr/bin/ferry") {
		t.Errorf("/usr/bin/ferry still there after remove")
	}
	if got, _ := os.ReadFile(c.file("/etc/ferry/ferry.yml")); string(got) != edited {
		t.Errorf("remove did not keep the edited /etc/ferry/ferry.yml")
	}
	for _, path := range []string{"/etc/default/ferry", "/var/lib/ferry/wal", "/var/lib/ferry/state"} {
		if !c.exists(path) {
			t.Errorf("remove deleted %s", path)
		}
	}

	// Purge: configuration and data gone.
	c.must("apt-get", "purge", "-y", "ferry")
	for _, path := range []string{"/etc/ferry", "/etc/default/ferry", "/var/lib/ferry"} {
		if c.exists(path) {
			t.Errorf("%s still there after purge", path)
		}
	}
	if out, err := c.exec("dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "ferry"); err == nil && strings.TrimSpace(out) != "" && !strings.HasPrefix(out, "un") {
		t.Errorf("ferry still known to dpkg after purge: %q", out)
	}
	t.Logf("deb: install, reload, kill -9, upgrade, remove, purge done after %s", time.Since(begin).Round(time.Millisecond))

	// The rpm's scriptlets, run by rpm itself. --nodeps: this rpm
	// database knows none of the system's packages. The user is deleted
	// first so that %pre has to create it.
	c.must("userdel", "ferry")
	c.must("rpm", "-i", "--nodeps", c.copyIn(rpmFile))
	pid = c.waitFerry("0", client)
	if got := strings.TrimSpace(c.must("systemctl", "is-enabled", "ferry.service")); got != "enabled" {
		t.Errorf("rpm: is-enabled = %q", got)
	}
	if got := strings.TrimSpace(c.must("ps", "-o", "user=", "-p", pid)); got != "ferry" {
		t.Errorf("rpm: ferry runs as %q, want ferry", got)
	}
	p = newPusher("127.0.0.1:9201", 50)
	p.client = client
	pushAndCheck(10, prom)
	c.must("rpm", "-U", "--nodeps", c.copyIn(newRPM))
	c.waitFerry(pid, client)
	if got := strings.TrimSpace(c.must("ferry", "version")); got != "ferry "+newer {
		t.Errorf("rpm upgrade: ferry version = %q, want %q", got, "ferry "+newer)
	}
	pushAndCheck(10, prom)
	c.must("rpm", "-e", "ferry")
	if out, _ := c.exec("systemctl", "is-active", "ferry.service"); strings.TrimSpace(out) == "active" {
		t.Errorf("rpm -e left ferry.service active")
	}
	if out, _ := c.exec("systemctl", "is-enabled", "ferry.service"); strings.TrimSpace(out) == "enabled" {
		t.Errorf("rpm -e left ferry.service enabled")
	}
	if !c.exists("/var/lib/ferry/wal") {
		t.Errorf("rpm -e deleted /var/lib/ferry")
	}
	t.Logf("boot test done in %s", time.Since(begin).Round(time.Millisecond))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestPackageChroot installs and removes the packages in a chroot, where
// systemd does not run (as in an image build): the maintainer scripts
// succeed, create the user and enable the unit without starting it.
func TestPackageChroot(t *testing.T) {
	needPackages(t)
	deb := pkgFile(t, distDir(), "ferry_*_amd64.deb")
	rpmFile := pkgFile(t, distDir(), "ferry-*.x86_64.rpm")
	root := filepath.Join(t.TempDir(), "root")
	run(t, "cp", "-a", "--reflink=auto", bookwormRoot(t), root)
	in := func(args ...string) string {
		t.Helper()
		return run(t, "chroot", append([]string{root, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, args...)...)
	}
	for _, f := range []string{deb, rpmFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "var/tmp", filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/ferry.service")
	enabled := func() bool { _, err := os.Lstat(wants); return err == nil }

	in("dpkg", "-i", "/var/tmp/"+filepath.Base(deb))
	in("getent", "passwd", "ferry")
	if !enabled() {
		t.Errorf("dpkg -i in a chroot did not enable ferry.service")
	}
	in("dpkg", "--remove", "ferry")
	if _, err := os.Stat(filepath.Join(root, "etc/ferry/ferry.yml")); err != nil {
		t.Errorf("dpkg --remove: %v", err)
	}
	in("dpkg", "--purge", "ferry")
	if _, err := os.Stat(filepath.Join(root, "etc/ferry")); err == nil {
		t.Errorf("dpkg --purge left /etc/ferry")
	}
	if enabled() {
		t.Errorf("dpkg --purge left the enablement symlink")
	}

	in("userdel", "ferry")
	in("rpm", "-i", "--nodeps", "/var/tmp/"+filepath.Base(rpmFile))
	in("getent", "passwd", "ferry")
	if !enabled() {
		t.Errorf("rpm -i in a chroot did not enable ferry.service")
	}
	in("rpm", "-e", "ferry")
	if enabled() {
		t.Errorf("rpm -e in a chroot did not disable ferry.service")
	}
}
