package integration

// Tests of the .deb and .rpm packages that `make packages` builds into
// dist/: contents, metadata, maintainer scripts, lintian, the systemd unit
// and reproducibility. The boot test is in packages_boot_test.go. All of
// them run only with FERRY_PACKAGES=1 (`make test-packages`), as root on
// Debian; missing tools are installed with apt-get.

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// packageTools maps the commands the package tests run to the Debian
// packages that provide them.
var packageTools = map[string]string{
	"dpkg-deb":        "dpkg",
	"lintian":         "lintian",
	"rpm":             "rpm",
	"cpio":            "cpio",
	"debootstrap":     "debootstrap",
	"systemd-nspawn":  "systemd-container",
	"systemd-analyze": "systemd",
	"nsenter":         "util-linux",
}

var (
	toolsOnce sync.Once
	toolsErr  error
	distOnce  sync.Once
	distErr   error
)

// needPackages skips the test unless FERRY_PACKAGES=1 and makes sure the
// tools and the packages in dist/ are there.
func needPackages(t *testing.T) {
	t.Helper()
	if os.Getenv("FERRY_PACKAGES") != "1" {
		t.Skip("package tests are off: run `make test-packages` (or set FERRY_PACKAGES=1, as root on Debian)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("FERRY_PACKAGES=1: the package tests need root (rpm --root, systemd-nspawn, apt-get)")
	}
	toolsOnce.Do(func() { toolsErr = installTools() })
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	distOnce.Do(func() {
		if m, _ := filepath.Glob(filepath.Join(distDir(), "ferry_*_amd64.deb")); len(m) == 0 {
			// Not built yet: `go test` run without `make packages`.
			distErr = buildPackages(distDir(), nil)
		}
	})
	if distErr != nil {
		t.Fatal(distErr)
	}
}

// installTools installs the Debian packages of missing tools.
func installTools() error {
	var missing []string
	for cmd, pkg := range packageTools {
		if _, err := exec.LookPath(cmd); err != nil && !contains(missing, pkg) {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("missing tools from %v and no apt-get to install them", missing)
	}
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// repoRoot is the module root (tests run in integration/).
func repoRoot() string {
	abs, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return abs
}

// distDir is where the packages under test are: $FERRY_DIST or dist/.
func distDir() string {
	if d := os.Getenv("FERRY_DIST"); d != "" {
		abs, _ := filepath.Abs(d)
		return abs
	}
	return filepath.Join(repoRoot(), "dist")
}

// buildPackages runs packaging/build.sh into dist with extra environment.
func buildPackages(dist string, env []string) error {
	cmd := exec.Command("sh", "packaging/build.sh")
	cmd.Dir = repoRoot()
	cmd.Env = append(append(os.Environ(), "DIST="+dist), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("packaging/build.sh: %v\n%s", err, out)
	}
	return nil
}

// pkgFile returns the one package in dir matching pattern.
func pkgFile(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("want exactly one %s in %s, found %v (run `make packages`)", pattern, dir, m)
	}
	return m[0]
}

// run runs a command and returns its stdout; it fails the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, stderr, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return out
}

func runErr(name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// debVersion is the Debian version of a deb ("0.1.0-1"); upstream is
// without the revision.
func debVersion(t *testing.T, deb string) (full, upstream string) {
	full = strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Version"))
	return full, strings.TrimSuffix(full, "-1")
}

// The files every package ships, with mode; all are owned by root.
var pkgFiles = map[string]string{
	"/usr/bin/ferry":                         "-rwxr-xr-x",
	"/usr/lib/systemd/system/ferry.service":  "-rw-r--r--",
	"/usr/lib/sysusers.d/ferry.conf":         "-rw-r--r--",
	"/etc/ferry":                             "drwxr-xr-x",
	"/etc/ferry/ferry.yml":                   "-rw-r--r--",
	"/usr/share/man/man1/ferry.1.gz":         "-rw-r--r--",
	"/usr/share/ferry/ferry-alerts.yml":      "-rw-r--r--",
	"/usr/share/ferry/ferry-dashboard.json":  "-rw-r--r--",
	"/usr/share/ferry/ferry-alerts.test.yml": "-rw-r--r--",
}

var debOnlyFiles = map[string]string{
	"/etc/default/ferry":                       "-rw-r--r--",
	"/usr/share/doc/ferry/copyright":           "-rw-r--r--",
	"/usr/share/doc/ferry/changelog.Debian.gz": "-rw-r--r--",
	"/usr/share/lintian/overrides/ferry":       "-rw-r--r--",
}

var rpmOnlyFiles = map[string]string{
	"/etc/sysconfig/ferry":              "-rw-r--r--",
	"/usr/share/licenses/ferry/LICENSE": "-rw-r--r--",
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestPackageDeb checks both .debs with dpkg-deb: control fields,
// conffiles, maintainer scripts, every file with its mode and owner, and
// the binary and the configuration they ship.
func TestPackageDeb(t *testing.T) {
	needPackages(t)
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			deb := pkgFile(t, distDir(), "ferry_*_"+arch+".deb")
			full, upstream := debVersion(t, deb)
			info := run(t, "dpkg-deb", "-I", deb)
			for _, want := range []string{
				"Package: ferry\n", "Version: " + full + "\n", "Architecture: " + arch + "\n",
				"Depends: procps\n", "Section: net\n", "Priority: optional\n",
				"Homepage: https://github.com/ferrymetrics/ferry\n",
			} {
				if !strings.Contains(info, want) {
					t.Errorf("dpkg-deb -I: no %q in\n%s", strings.TrimSpace(want), info)
				}
			}
			if strings.Contains(info, "preinst") {
				t.Errorf("unexpected preinst:\n%s", info)
			}
			conffiles := strings.Fields(run(t, "dpkg-deb", "-I", deb, "conffiles"))
			sort.Strings(conffiles)
			if want := []string{"/etc/default/ferry", "/etc/ferry/ferry.yml"}; strings.Join(conffiles, " ") != strings.Join(want, " ") {
				t.Errorf("conffiles = %v, want %v", conffiles, want)
			}

			// Maintainer scripts: valid sh, and the calls that make the
			// service behave (see packaging/scripts/deb).
			scripts := map[string][]string{
				"postinst": {"systemd-sysusers", "useradd --system", "deb-systemd-helper enable ferry.service",
					"deb-systemd-invoke restart ferry.service", "deb-systemd-invoke start ferry.service", "[ -d /run/systemd/system ]"},
				"prerm":  {`[ "$1" = remove ]`, "deb-systemd-invoke stop ferry.service"},
				"postrm": {"deb-systemd-helper purge ferry.service", "rm -rf /etc/ferry /var/lib/ferry"},
			}
			for name, wants := range scripts {
				body := run(t, "dpkg-deb", "-I", deb, name)
				checkScript(t, name, body, wants)
			}

			// Contents: exactly the expected files, modes, root:root, and
			// one time stamp (SOURCE_DATE_EPOCH). No /var/lib/ferry: the
			// unit's StateDirectory= makes it.
			want := merge(pkgFiles, debOnlyFiles)
			seen := map[string]bool{}
			stamps := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", deb)), "\n") {
				f := strings.Fields(line)
				if len(f) < 6 {
					t.Fatalf("dpkg-deb -c: odd line %q", line)
				}
				mode, owner, path := f[0], f[1], strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/")
				stamps[f[3]+" "+f[4]] = true
				if owner != "root/root" && owner != "0/0" {
					t.Errorf("%s: owner %s, want root/root", path, owner)
				}
				if mode[0] == 'd' {
					if w, ok := want[path]; ok && w != mode {
						t.Errorf("%s: mode %s, want %s", path, mode, w)
					} else if !ok && mode != "drwxr-xr-x" {
						t.Errorf("directory %s: mode %s", path, mode)
					}
					if strings.HasPrefix(path, "/var") {
						t.Errorf("the package ships %s; StateDirectory= creates /var/lib/ferry", path)
					}
					seen[path] = true
					continue
				}
				w, ok := want[path]
				if !ok {
					t.Errorf("unexpected file %s", path)
					continue
				}
				if mode != w {
					t.Errorf("%s: mode %s, want %s", path, mode, w)
				}
				seen[path] = true
			}
			for path := range want {
				if !seen[path] {
					t.Errorf("missing %s", path)
				}
			}
			if len(stamps) != 1 {
				t.Errorf("files have several time stamps %v; want SOURCE_DATE_EPOCH only", stamps)
			}

			// The shipped binary: a static ELF for the architecture that
			// reports the package version; the shipped configuration is
			// valid and safe.
			dir := t.TempDir()
			run(t, "dpkg-deb", "-x", deb, dir)
			checkELF(t, filepath.Join(dir, "usr/bin/ferry"), arch)
			if arch == "amd64" {
				if got := strings.TrimSpace(run(t, filepath.Join(dir, "usr/bin/ferry"), "version")); got != "ferry "+upstream {
					t.Errorf("ferry version = %q, want %q", got, "ferry "+upstream)
				}
				checkShippedConfig(t, filepath.Join(dir, "usr/bin/ferry"), filepath.Join(dir, "etc/ferry/ferry.yml"))
			}
			if b, err := os.ReadFile(filepath.Join(dir, "etc/default/ferry")); err != nil || !regexp.MustCompile(`(?m)^FERRY_OPTS=$`).Match(b) {
				t.Errorf("/etc/default/ferry must set FERRY_OPTS= (err %v):\n%s", err, b)
			}
			cp, _ := os.ReadFile(filepath.Join(dir, "usr/share/doc/ferry/copyright"))
			for _, want := range []string{"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/", "License: Apache-2.0", "/usr/share/common-licenses/Apache-2.0"} {
				if !bytes.Contains(cp, []byte(want)) {
					t.Errorf("copyright lacks %q", want)
				}
			}
		})
	}
}

// checkScript asserts a maintainer script parses as sh and contains wants.
func checkScript(t *testing.T, name, body string, wants []string) {
	t.Helper()
	if !strings.HasPrefix(body, "#!/bin/sh\n") {
		t.Errorf("%s does not start with #!/bin/sh", name)
	}
	cmd := exec.Command("sh", "-n")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: sh -n: %v\n%s", name, err, out)
	}
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q:\n%s", name, w, body)
		}
	}
}

func checkELF(t *testing.T, path, arch string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != want {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked; want CGO_ENABLED=0", path)
		}
	}
}

// checkShippedConfig: `ferry check config` passes; 127.0.0.1:9201 only;
// no data_dir (so $STATE_DIRECTORY is used); forwards to the local
// Prometheus.
func checkShippedConfig(t *testing.T, bin, cfg string) {
	t.Helper()
	if out, stderr, err := runErr(bin, "check", "config", cfg); err != nil {
		t.Errorf("ferry check config %s: %v\n%s%s", cfg, err, out, stderr)
	}
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^listen_address: 127\.0\.0\.1:9201$`, `(?m)^    url: http://127\.0\.0\.1:9090/api/v1/write$`} {
		if !regexp.MustCompile(re).Match(b) {
			t.Errorf("shipped ferry.yml does not match %s", re)
		}
	}
	if regexp.MustCompile(`(?m)^\s*data_dir:`).Match(b) {
		t.Errorf("shipped ferry.yml sets data_dir; it must leave it to $STATE_DIRECTORY")
	}
}

// TestPackageLintian runs lintian on both .debs: no error and no warning
// (the overrides shipped in the package are each justified in
// packaging/lintian-overrides).
func TestPackageLintian(t *testing.T) {
	needPackages(t)
	for _, arch := range []string{"amd64", "arm64"} {
		deb := pkgFile(t, distDir(), "ferry_*_"+arch+".deb")
		out, stderr, err := runErr("lintian", "--tag-display-limit", "0", "--display-info", "--pedantic", deb)
		t.Logf("lintian %s (info and pedantic tags shown, not failing):\n%s", filepath.Base(deb), out)
		if err != nil && out == "" {
			t.Fatalf("lintian: %v\n%s", err, stderr)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
				t.Errorf("lintian: %s", line)
			}
		}
	}
}

// TestPackageRPM inspects both .rpms with rpm -qp and installs the native
// one into an rpm --root tree to check where files land, their modes and
// owners. Nothing from an rpm is ever extracted onto the real filesystem.
func TestPackageRPM(t *testing.T) {
	needPackages(t)
	deb := pkgFile(t, distDir(), "ferry_*_amd64.deb")
	_, upstream := debVersion(t, deb)
	for _, arch := range []string{"x86_64", "aarch64"} {
		t.Run(arch, func(t *testing.T) {
			rpm := pkgFile(t, distDir(), "ferry-*."+arch+".rpm")
			info := run(t, "rpm", "-qpi", rpm)
			for _, re := range []string{
				`(?m)^Name\s*: ferry$`, `(?m)^Version\s*: ` + regexp.QuoteMeta(upstream) + `$`, `(?m)^Release\s*: 1$`,
				`(?m)^Architecture: ` + arch + `$`, `(?m)^License\s*: Apache-2.0$`, `(?m)^Build Host\s*: reproducible$`,
			} {
				if !regexp.MustCompile(re).MatchString(info) {
					t.Errorf("rpm -qpi: no match for %s in\n%s", re, info)
				}
			}
			want := merge(pkgFiles, rpmOnlyFiles)
			var wantList []string
			for p := range want {
				wantList = append(wantList, p)
			}
			sort.Strings(wantList)
			list := strings.Fields(run(t, "rpm", "-qpl", rpm))
			sort.Strings(list)
			if strings.Join(list, "\n") != strings.Join(wantList, "\n") {
				t.Errorf("rpm -qpl:\n%s\nwant:\n%s", strings.Join(list, "\n"), strings.Join(wantList, "\n"))
			}
			conf := strings.Fields(run(t, "rpm", "-qpc", rpm))
			sort.Strings(conf)
			if strings.Join(conf, " ") != "/etc/ferry/ferry.yml /etc/sysconfig/ferry" {
				t.Errorf("rpm -qpc = %v", conf)
			}
			if req := run(t, "rpm", "-qp", "--requires", rpm); !strings.Contains(req, "/usr/bin/kill") {
				t.Errorf("rpm requires lack /usr/bin/kill (ExecReload):\n%s", req)
			}
			if out := run(t, "rpm", "-qp", "--scripts", rpm); !strings.Contains(out, "preinstall scriptlet") || !strings.Contains(out, "postuninstall scriptlet") {
				t.Errorf("rpm -qp --scripts:\n%s", out)
			}
			scripts := map[string][]string{
				"PREIN":  {"systemd-sysusers --replace=/usr/lib/sysusers.d/ferry.conf -", "useradd --system"},
				"POSTIN": {`if [ "$1" -eq 1 ]`, "systemctl --no-reload enable ferry.service", "systemctl start ferry.service"},
				"PREUN":  {`if [ "$1" -eq 0 ]`, "systemctl --no-reload disable --now ferry.service"},
				"POSTUN": {`if [ "$1" -ge 1 ]`, "systemctl try-restart ferry.service"},
			}
			for tag, wants := range scripts {
				checkScript(t, tag, run(t, "rpm", "-qp", "--qf", "%{"+tag+"}", rpm), wants)
			}
			// The sysusers line in %pre is the one in the sysusers file.
			sysusers, _ := os.ReadFile(filepath.Join(repoRoot(), "packaging/sysusers.conf"))
			pre := run(t, "rpm", "-qp", "--qf", "%{PREIN}", rpm)
			for _, l := range strings.Split(string(sysusers), "\n") {
				if strings.HasPrefix(l, "u ") && !strings.Contains(pre, "'"+l+"'") {
					t.Errorf("%%pre does not create the user as packaging/sysusers.conf does (%q)", l)
				}
			}

			root := t.TempDir()
			run(t, "rpm", "--root", root, "--initdb")
			args := []string{"--root", root, "--nodeps", "--noscripts", "-i", rpm}
			if arch != "x86_64" {
				args = append([]string{"--ignorearch"}, args...)
			}
			run(t, "rpm", args...)
			if out, stderr, err := runErr("rpm", "--root", root, "-V", "--nodeps", "ferry"); err != nil {
				t.Errorf("rpm -V: %v\n%s%s", err, out, stderr)
			}
			for path, mode := range want {
				fi, err := os.Lstat(filepath.Join(root, path))
				if err != nil {
					t.Errorf("rpm --root: %v", err)
					continue
				}
				if fi.Mode().String() != mode {
					t.Errorf("%s: mode %s, want %s", path, fi.Mode(), mode)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if st.Uid != 0 || st.Gid != 0 {
					t.Errorf("%s: owner %d:%d, want root", path, st.Uid, st.Gid)
				}
			}
			if _, err := os.Stat(filepath.Join(root, "var/lib/ferry")); err == nil {
				t.Errorf("the rpm creates /var/lib/ferry; StateDirectory= must")
			}
		})
	}
}

// TestPackageUnit checks ferry.service as installed: systemd-analyze
// verify (in a root holding the package's files, the host's units and
// /bin/kill, since verify checks that Exec* commands exist) with empty
// stderr, and the security exposure at most 2.0.
func TestPackageUnit(t *testing.T) {
	needPackages(t)
	deb := pkgFile(t, distDir(), "ferry_*_amd64.deb")
	root := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, root)
	units, err := filepath.Glob("/usr/lib/systemd/system/*")
	if err != nil || len(units) == 0 {
		units, _ = filepath.Glob("/lib/systemd/system/*")
	}
	for _, u := range units {
		if filepath.Base(u) != "ferry.service" {
			run(t, "cp", "-a", u, filepath.Join(root, "usr/lib/systemd/system/"))
		}
	}
	kill, err := exec.LookPath("kill")
	if err != nil {
		t.Fatal(err)
	}
	run(t, "cp", kill, filepath.Join(root, "usr/bin/kill"))
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}

	out, stderr, err := runErr("systemd-analyze", "verify", "--man=no", "--root="+root, "ferry.service")
	if err != nil || stderr != "" {
		t.Errorf("systemd-analyze verify: %v\n%s%s", err, out, stderr)
	}

	out, stderr, err = runErr("systemd-analyze", "security", "--offline=true", "--threshold=20", "--root="+root, "ferry.service")
	m := regexp.MustCompile(`Overall exposure level for ferry.service: ([0-9.]+)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security --threshold=20: %v\n%s%s", err, out, stderr)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	if score > 2.0 {
		t.Errorf("exposure %.1f > 2.0", score)
	}

	// What Ferry itself needs from the sandbox (see the unit's comments).
	unit, _ := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/ferry.service"))
	for _, want := range []string{
		"Type=notify\n", "ExecStart=/usr/bin/ferry run --config /etc/ferry/ferry.yml $FERRY_OPTS\n",
		"ExecReload=/bin/kill -HUP $MAINPID\n", "WatchdogSec=30s\n", "Restart=on-failure\n",
		"StateDirectory=ferry\n", "User=ferry\n", "Group=ferry\n", "TimeoutStopSec=60s\n",
		"LimitNOFILE=65536\n", "EnvironmentFile=-/etc/default/ferry\n", "EnvironmentFile=-/etc/sysconfig/ferry\n",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n",
	} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("ferry.service lacks %q", strings.TrimSpace(want))
		}
	}
	var settings []string
	for _, l := range strings.Split(string(unit), "\n") {
		if !strings.HasPrefix(l, "#") {
			settings = append(settings, l)
		}
	}
	for _, bad := range []string{"ProcSubset=pid", "~@resources"} {
		if strings.Contains(strings.Join(settings, "\n"), bad) {
			t.Errorf("ferry.service has %s, which breaks Ferry", bad)
		}
	}
}

// TestPackageReproducible builds the packages twice, into two temporary
// directories, and expects the same bytes. The version and
// SOURCE_DATE_EPOCH are pinned for both builds, as `make packages` pins
// them from the same commit.
func TestPackageReproducible(t *testing.T) {
	needPackages(t)
	deb := pkgFile(t, distDir(), "ferry_*_amd64.deb")
	_, upstream := debVersion(t, deb)
	env := []string{"FERRY_PKG_VERSION=" + upstream, "SOURCE_DATE_EPOCH=" + strings.TrimSpace(run(t, "git", "-C", repoRoot(), "log", "-1", "--format=%ct"))}
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := buildPackages(dir, env); err != nil {
			t.Fatal(err)
		}
	}
	for _, pattern := range []string{"ferry_*_amd64.deb", "ferry_*_arm64.deb", "ferry-*.x86_64.rpm", "ferry-*.aarch64.rpm"} {
		pa, pb := pkgFile(t, a, pattern), pkgFile(t, b, pattern)
		if ha, hb := sha256File(t, pa), sha256File(t, pb); ha != hb {
			t.Errorf("%s differs between two builds: %s vs %s", filepath.Base(pa), ha, hb)
		} else {
			t.Logf("%s %s", ha, filepath.Base(pa))
		}
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestPackageVersion checks packaging/version.sh's mapping of `git
// describe` to package versions, and that dpkg and rpm order them as git
// history does.
func TestPackageVersion(t *testing.T) {
	needPackages(t)
	cases := []struct{ describe, time, want string }{
		{"abc1234", "20261122053000", "0.0.0~git20261122053000.abc1234"},
		{"abc1234-dirty", "20261122053000", "0.0.0~git20261122053000.abc1234+dirty"},
		{"v1.2.3", "", "1.2.3"},
		{"v1.2.3-dirty", "", "1.2.3+dirty"},
		{"v1.2.3-rc.1", "", "1.2.3~rc.1"},
		{"v1.2.3-4-gabc1234", "", "1.2.3+git4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "", "1.2.3+git4.gabc1234.dirty"},
	}
	for _, c := range cases {
		cmd := exec.Command("sh", "packaging/version.sh")
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "FERRY_GIT_DESCRIBE="+c.describe, "FERRY_GIT_TIME="+c.time)
		out, err := cmd.Output()
		if got := strings.TrimSpace(string(out)); err != nil || got != c.want {
			t.Errorf("version.sh for %q = %q (%v), want %q", c.describe, got, err, c.want)
		}
	}
	// Each is older than the next, for dpkg and for rpm.
	order := []string{
		"0.0.0~git20261122053000.abc1234", "0.0.0~git20261123000000.0123abc", "0.0.0~git20261123000000.0123abc+dirty",
		"1.2.3~rc.1", "1.2.3", "1.2.3+git4.gabc1234", "1.2.3+git5.g0123abc", "1.2.4",
	}
	for i := 0; i+1 < len(order); i++ {
		a, b := order[i], order[i+1]
		if _, _, err := runErr("dpkg", "--compare-versions", a, "lt", b); err != nil {
			t.Errorf("dpkg: %s is not older than %s", a, b)
		}
		out := strings.TrimSpace(run(t, "rpm", "--eval", fmt.Sprintf(`%%{lua: print(rpm.vercmp(%q, %q))}`, a, b)))
		if out != "-1" {
			t.Errorf("rpm: vercmp(%s, %s) = %s, want -1", a, b, out)
		}
	}
}
