package report

// serviceName gives a short hint of what usually listens on a port, for the top port
// list: the common services plus the old trojan ports in Debian's default port lists.
// Ports without a well-known use give "".
func serviceName(port uint16, proto string) string {
	if proto == "UDP" {
		if s, ok := udpServices[port]; ok {
			return s
		}
	} else if s, ok := tcpServices[port]; ok {
		return s
	}
	return commonServices[port]
}

// commonServices are the same service over TCP and UDP.
var commonServices = map[uint16]string{
	7: "echo", 53: "DNS", 111: "sunrpc", 135: "MS RPC", 389: "LDAP", 500: "IKE",
	635: "mountd", 1433: "MS SQL", 3389: "RDP", 5060: "SIP", 31337: "Back Orifice",
}

var tcpServices = map[uint16]string{
	1: "tcpmux", 11: "systat", 15: "netstat", 21: "FTP", 22: "SSH", 23: "Telnet",
	25: "SMTP", 79: "finger", 80: "HTTP", 110: "POP3", 119: "NNTP", 139: "NetBIOS session",
	143: "IMAP", 443: "HTTPS", 445: "SMB", 465: "SMTPS", 540: "uucp", 587: "submission",
	993: "IMAPS", 995: "POP3S", 1080: "SOCKS", 1524: "ingreslock", 2000: "Cisco SCCP",
	2375: "Docker API", 3306: "MySQL", 5432: "PostgreSQL", 5900: "VNC", 6379: "Redis",
	6667: "IRC", 8080: "HTTP alt", 8443: "HTTPS alt", 9200: "Elasticsearch",
	12345: "NetBus", 12346: "NetBus", 20034: "NetBus 2", 27017: "MongoDB",
	27665: "Trin00 master", 54320: "Back Orifice 2000",
}

var udpServices = map[uint16]string{
	9: "discard", 67: "DHCP", 69: "TFTP", 123: "NTP", 137: "NetBIOS name",
	138: "NetBIOS datagram", 161: "SNMP", 162: "SNMP trap", 513: "who", 514: "syslog",
	520: "RIP", 1900: "SSDP", 11211: "memcached", 27444: "Trin00 daemon",
	31335: "Trin00 daemon", 54321: "Back Orifice 2000",
}
