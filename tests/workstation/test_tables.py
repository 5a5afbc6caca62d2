"""The session listings of Windows (English, French), quser, loginctl and MultiPoint."""

from __future__ import annotations

import pytest

from sortie_workstation.adapters import Session
from sortie_workstation.adapters.tables import (
    TableError,
    parse_loginctl_json,
    parse_loginctl_text,
    parse_windows_table,
    parse_wms_json,
)

QUERY_EN = """\
 SESSIONNAME       USERNAME                 ID  STATE   TYPE        DEVICE
 services                                    0  Disc
>console           alice                     1  Active
 rdp-tcp#12        SCHOOL\\bob                3  Active  rdpwd
                   carol                     4  Disc
                   20231145                  5  Disc
 rdp-tcp                                 65536  Listen
"""

QUERY_FR = """\
 SESSION           UTILISATEUR              ID  ÉTAT    TYPE        PÉRIPHÉRIQUE
 services                                    0  Déco
>console           élodie                    1  Actif
 rdp-tcp#3         bob                       2  Actif   rdpwd
                   carol                     7  Déco
 rdp-tcp                                 65536  Écouter
"""

QUSER_EN = """\
 USERNAME              SESSIONNAME        ID  STATE   IDLE TIME  LOGON TIME
>alice                 console             1  Active      none   11/21/2026 8:01 AM
 carol                                     4  Disc         1:02  11/21/2026 7:30 AM
"""

QUSER_FR = """\
 UTILISATEUR           SESSION            ID  ÉTAT    TEMPS INACT  TEMPS SESSION
>élodie                console             1  Actif          .     21/11/2026 08:01
 carol                                     7  Déco           12    21/11/2026 07:30
"""


def test_query_session_english() -> None:
    assert parse_windows_table(QUERY_EN, user_first=False) == [
        Session(1, "alice", "active", "console"),
        Session(3, "SCHOOL\\bob", "active", "rdp-tcp#12"),
        Session(4, "carol", "disconnected", None),
        Session(5, "20231145", "disconnected", None),
    ]


def test_query_session_french() -> None:
    assert parse_windows_table(QUERY_FR, user_first=False) == [
        Session(1, "élodie", "active", "console"),
        Session(2, "bob", "active", "rdp-tcp#3"),
        Session(7, "carol", "disconnected", None),
    ]


@pytest.mark.parametrize(
    ("text", "first"), [(QUSER_EN, ("alice", "active")), (QUSER_FR, ("élodie", "active"))]
)
def test_quser(text: str, first: tuple[str, str]) -> None:
    sessions = parse_windows_table(text, user_first=True)
    assert (sessions[0].user, sessions[0].state) == first
    assert sessions[0].station == "console"
    assert sessions[1].state == "disconnected" and sessions[1].station is None
    assert [s.id for s in sessions] in ([1, 4], [1, 7])


def test_unrecognised_windows_header_is_an_error() -> None:
    with pytest.raises(TableError):
        parse_windows_table("Access is denied.\n", user_first=False)
    with pytest.raises(TableError):
        parse_windows_table("", user_first=False)


def test_loginctl_json() -> None:
    text = (
        '[{"session":"3","uid":1000,"user":"alice","seat":"seat0","tty":"tty2"},'
        '{"session":"c1","uid":1001,"user":"bob","seat":null,"tty":"pts/0",'
        '"state":"online"},{"session":"9","uid":113,"user":"","seat":null}]'
    )
    assert parse_loginctl_json(text) == [
        Session(3, "alice", "active", "seat0"),
        Session("c1", "bob", "online", "pts/0"),
    ]
    with pytest.raises(TableError):
        parse_loginctl_json("{not json")


def test_loginctl_text_of_older_systemd() -> None:
    text = """\
   SESSION        UID USER             SEAT             TTY
         3       1000 alice            seat0            tty2
        c1       1001 bob

2 sessions listed.
"""
    assert parse_loginctl_text(text) == [
        Session(3, "alice", "active", "seat0"),
        Session("c1", "bob", "active", None),
    ]


def test_multipoint_json_one_many_none() -> None:
    one = '{"SessionId":2,"UserName":"alice","SessionState":"Active","StationId":1}'
    assert parse_wms_json(one) == [Session(2, "alice", "active", "1")]
    many = (
        '[{"SessionId":2,"UserName":"alice","SessionState":"Active","StationId":1},'
        '{"SessionId":3,"UserName":"bob","SessionState":"Disconnected","StationId":null}]'
    )
    assert [s.state for s in parse_wms_json(many)] == ["active", "disconnected"]
    assert parse_wms_json("") == []
    with pytest.raises(TableError):
        parse_wms_json('[{"UserName":"x"}]')
