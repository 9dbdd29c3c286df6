"""Loads a PKCS#11 module through its C ABI (ctypes), signs, forks, and checks what PKCS#11
says of a child: the parent's initialisation does not carry over (CKR_CRYPTOKI_NOT_INITIALIZED),
C_Initialize in the child succeeds and the child signs; the parent still signs afterwards.

usage: pkcs11_fork.py MODULE KEY_LABEL   (the module's own settings come from its environment)
Prints one line per step; exits 0 when every step answered as expected.
"""

import ctypes
import os
import sys

CK_ULONG = ctypes.c_ulong
CKR_OK = 0
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKO_PRIVATE_KEY = 3
CKA_CLASS = 0
CKA_LABEL = 3
CKM_ECDSA_SHA256 = 0x1044
CKF_SERIAL_SESSION = 4

# Positions in CK_FUNCTION_LIST (PKCS#11 2.40), after the version.
C_INITIALIZE, C_GET_SLOT_LIST, C_OPEN_SESSION = 0, 4, 12
C_FIND_OBJECTS_INIT, C_FIND_OBJECTS, C_FIND_OBJECTS_FINAL = 26, 27, 28
C_SIGN_INIT, C_SIGN = 42, 43


class Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class FunctionList(ctypes.Structure):
    _fields_ = [("version", Version), ("functions", ctypes.c_void_p * 68)]


class Attribute(ctypes.Structure):
    _fields_ = [("type", CK_ULONG), ("value", ctypes.c_void_p), ("length", CK_ULONG)]


class Mechanism(ctypes.Structure):
    _fields_ = [("mechanism", CK_ULONG), ("parameter", ctypes.c_void_p), ("length", CK_ULONG)]


def main():
    module, label = sys.argv[1], sys.argv[2].encode()
    lib = ctypes.CDLL(module)
    listp = ctypes.POINTER(FunctionList)()
    assert lib.C_GetFunctionList(ctypes.byref(listp)) == CKR_OK
    table = listp.contents.functions

    def fn(index, *args):
        return ctypes.CFUNCTYPE(CK_ULONG, *args)(table[index])

    initialize = fn(C_INITIALIZE, ctypes.c_void_p)
    slot_list = fn(C_GET_SLOT_LIST, ctypes.c_ubyte, ctypes.c_void_p, ctypes.POINTER(CK_ULONG))
    open_session = fn(
        C_OPEN_SESSION, CK_ULONG, CK_ULONG, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.POINTER(CK_ULONG),
    )
    find_init = fn(C_FIND_OBJECTS_INIT, CK_ULONG, ctypes.c_void_p, CK_ULONG)
    find = fn(C_FIND_OBJECTS, CK_ULONG, ctypes.POINTER(CK_ULONG), CK_ULONG, ctypes.POINTER(CK_ULONG))
    find_final = fn(C_FIND_OBJECTS_FINAL, CK_ULONG)
    sign_init = fn(C_SIGN_INIT, CK_ULONG, ctypes.POINTER(Mechanism), CK_ULONG)
    sign = fn(C_SIGN, CK_ULONG, ctypes.c_char_p, CK_ULONG, ctypes.c_void_p, ctypes.POINTER(CK_ULONG))

    def signs(who):
        session = CK_ULONG()
        rv = open_session(0, CKF_SERIAL_SESSION, None, None, ctypes.byref(session))
        if rv != CKR_OK:
            return f"{who}: C_OpenSession {rv:#x}"
        cls = CK_ULONG(CKO_PRIVATE_KEY)
        name = ctypes.create_string_buffer(label, len(label))
        template = (Attribute * 2)(
            Attribute(CKA_CLASS, ctypes.cast(ctypes.byref(cls), ctypes.c_void_p), ctypes.sizeof(cls)),
            Attribute(CKA_LABEL, ctypes.cast(name, ctypes.c_void_p), len(label)),
        )
        rv = find_init(session, ctypes.cast(template, ctypes.c_void_p), 2)
        key, count = CK_ULONG(), CK_ULONG()
        rv = rv or find(session, ctypes.byref(key), 1, ctypes.byref(count))
        rv = rv or find_final(session)
        if rv != CKR_OK or count.value != 1:
            return f"{who}: finding {label!r}: {rv:#x}, {count.value} found"
        mechanism = Mechanism(CKM_ECDSA_SHA256, None, 0)
        rv = sign_init(session, ctypes.byref(mechanism), key)
        out = ctypes.create_string_buffer(256)
        length = CK_ULONG(256)
        data = f"signed by the {who}".encode()
        rv = rv or sign(session, data, len(data), ctypes.cast(out, ctypes.c_void_p), ctypes.byref(length))
        if rv != CKR_OK:
            return f"{who}: C_Sign {rv:#x}"
        return f"{who}: signed ({length.value} bytes)"

    rv = initialize(None)
    print(f"parent: C_Initialize {rv:#x}")
    if rv != CKR_OK:
        return 1
    first = signs("parent")
    print(first)
    if "signed" not in first:
        return 1
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        count = CK_ULONG(0)
        rv = slot_list(0, None, ctypes.byref(count))
        print(f"child: C_GetSlotList before C_Initialize {rv:#x}")
        ok = rv == CKR_CRYPTOKI_NOT_INITIALIZED
        rv = initialize(None)
        print(f"child: C_Initialize {rv:#x}")
        ok = ok and rv == CKR_OK
        line = signs("child")
        print(line)
        sys.stdout.flush()
        os._exit(0 if ok and "signed" in line else 1)
    _, status = os.waitpid(pid, 0)
    child_ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    again = signs("parent")
    print(again)
    return 0 if child_ok and "signed" in again else 1


if __name__ == "__main__":
    sys.exit(main())
