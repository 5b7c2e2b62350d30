# Install diskwatch from source as a systemd service (the .deb does the same:
# `cargo deb`, then `dpkg -i target/debian/diskwatch_*.deb`).
#   make && sudo make install    # binary, units (agent + smartctl helper), config (kept if present)
#   sudo make uninstall          # keeps /etc/diskwatch and /var/lib/diskwatch
PREFIX ?= /usr
DESTDIR ?=
UNITDIR ?= /usr/lib/systemd/system
CARGO ?= cargo

.PHONY: all install uninstall deb
all:
	$(CARGO) build --release --locked

install:
	install -D -m 0755 target/release/diskwatch $(DESTDIR)$(PREFIX)/bin/diskwatch
	sed 's#/usr/bin/diskwatch#$(PREFIX)/bin/diskwatch#' systemd/diskwatch.service > diskwatch.service.tmp
	install -D -m 0644 diskwatch.service.tmp $(DESTDIR)$(UNITDIR)/diskwatch.service
	rm -f diskwatch.service.tmp
	# The smartctl helper (docs/health.md, "SMART under the systemd unit"): the socket the agent
	# asks, and the unit started per connection that alone holds SMART's capabilities.
	install -D -m 0644 systemd/helper/diskwatch-smartctl.socket $(DESTDIR)$(UNITDIR)/diskwatch-smartctl.socket
	sed 's#/usr/bin/diskwatch#$(PREFIX)/bin/diskwatch#' systemd/helper/diskwatch-smartctl@.service > diskwatch-smartctl.service.tmp
	install -D -m 0644 diskwatch-smartctl.service.tmp $(DESTDIR)$(UNITDIR)/diskwatch-smartctl@.service
	rm -f diskwatch-smartctl.service.tmp
	# The configuration may hold the MQTT password: root-only.
	test -e $(DESTDIR)/etc/diskwatch/config.toml || install -D -m 0640 config.example.toml $(DESTDIR)/etc/diskwatch/config.toml
	# The unit loads credentials from here (LoadCredential=); systemd refuses to start without it.
	install -d -m 0700 $(DESTDIR)/etc/diskwatch/credentials
	install -d -m 0750 $(DESTDIR)/var/lib/diskwatch
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload && systemctl enable --now diskwatch-smartctl.socket diskwatch; fi

uninstall:
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now diskwatch diskwatch-smartctl.socket || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/diskwatch $(DESTDIR)$(UNITDIR)/diskwatch.service
	rm -f $(DESTDIR)$(UNITDIR)/diskwatch-smartctl.socket $(DESTDIR)$(UNITDIR)/diskwatch-smartctl@.service
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

deb:
	$(CARGO) deb --locked
