# Sourced by the scripts that start servers on loopback ports.
#
# free_port prints a TCP port on 127.0.0.1 that nothing listens on, chosen
# below the kernel's ephemeral range (net.ipv4.ip_local_port_range): a port
# inside that range can become the local end of an outgoing connection (a
# load generator's, a database client's) between the probe and the
# server's bind, which then fails with "address already in use".
free_port() {
	local lo=32768 p
	if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
		read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
	fi
	[ "$lo" -gt 21024 ] || lo=32768
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % (lo - 20000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
