# Regenerates the ok-*/bad-* seeds of the ct-monitor fuzz corpora from tests/data
# and keeps the 90 smallest fuzzer-found files per target. Run from the repository root.
import base64,gzip,json,struct,os,re,glob
D='crates/ct-monitor/tests/data/'
C='fuzz/corpus/'
def w(t,n,b):
    open(C+t+'/'+n,'wb').write(b)
tile=open(D+'static-ct/navigli2025h2/tile/data/000','rb').read()
def entry_len(b,o):
    s=o; o+=8; et=struct.unpack('>H',b[o:o+2])[0]; o+=2
    if et==1: o+=32
    n=int.from_bytes(b[o:o+3],'big'); o+=3+n
    n=int.from_bytes(b[o:o+2],'big'); o+=2+n
    ts_end=o
    if et==1:
        n=int.from_bytes(b[o:o+3],'big'); o+=3+n
    n=int.from_bytes(b[o:o+2],'big'); o+=2+n
    return s,ts_end,o
s,te,e=entry_len(tile,0)
w('ct_tls_structures','ok-tile-entry0',tile[s:e])
s2,te2,e2=entry_len(tile,e)
w('ct_tls_structures','ok-tile-entry0-1',tile[s:e2])
leaf=b'\x00\x00'+tile[s:te]
pre_len=int.from_bytes(tile[te:te+3],'big'); pre=tile[te+3:te+3+pre_len]
chain=b''.join(len(c).to_bytes(3,'big')+c for c in [b'\x30\x00'])
extra=len(pre).to_bytes(3,'big')+pre+len(chain).to_bytes(3,'big')+chain
w('ct_tls_structures','ok-leaf-precert-with-extra',len(leaf).to_bytes(3,'big')+leaf+extra)
sth=json.load(open(D+'sth/venafi-rsa.json'))
w('ct_tls_structures','ok-digitally-signed-rsa',base64.b64decode(sth['sth']['tree_head_signature']))
w('ct_tls_structures','ok-gzip-tile-entry0',gzip.compress(tile[s:e],mtime=0))
w('ct_tls_structures','bad-truncated-entry',tile[s:e-1])
w('ct_tls_structures','bad-unknown-entry-type',tile[s:s+8]+b'\x00\x07'+tile[s+10:e])
cp=open(D+'sth/yeti2018-example.com.checkpoint','rb').read()
t='ct_checkpoint'
w(t,'ok-yeti2018',cp)
w(t,'ok-with-witness',cp+'\u2014 witness.example AAAAAAAAAAAA\n'.encode())
w(t,'bad-no-blank-line',cp.replace(b'\n\n',b'\n',1))
w(t,'bad-hyphen',cp.replace('\u2014'.encode(),b'-'))
w(t,'bad-leading-zero',cp.replace(b'90785920',b'090785920'))
w(t,'bad-short-root',cp.replace(b'l+XrWXWRyp4SmATORgTfz4CcYS/VlE7CeTuWI0FAk3o=',b'AAAA'))
w(t,'bad-no-final-newline',cp[:-1])
w(t,'bad-not-utf8',cp.replace(b'example.com\n9',b'ex\xffmple.com\n9',1))
t='ct_identifiers'
def pem(p):
    txt=open(p,encoding='latin-1').read()
    m=re.search(r'-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----',txt,re.S)
    return base64.b64decode(''.join(m.group(1).split()))
for p in sorted(glob.glob(D+'awkward-certs/*.pem')):
    n=os.path.basename(p)[:-4]
    w(t,('bad-' if 'indefinite' in n else 'ok-')+n,pem(p))
w(t,'ok-testlog-test-embedded-pre-cert',pem(D+'testlog/test-embedded-pre-cert.pem'))
w(t,'ok-navigli-precert0',pre)
tbs_len=int.from_bytes(tile[s+8+2+32:s+8+2+32+3],'big')
w(t,'ok-tbs-navigli0',tile[s+8+2+32+3:s+8+2+32+3+tbs_len])
w(t,'bad-empty',b'')
t='ct_responses'
os.makedirs(C+t,exist_ok=True)
b64=lambda b: base64.b64encode(b).decode()
w(t,'ok-entries-navigli0',json.dumps({'entries':[{'leaf_input':b64(leaf),'extra_data':b64(extra)}]}).encode())
w(t,'bad-entries-empty',b'{"entries":[]}')
w(t,'bad-entries-not-base64',b'{"entries":[{"leaf_input":"!!","extra_data":""}]}')
root=base64.b64decode('EMfGG85uIddeOXt5/wdQGP3IQd0COCqoLg9Q6CsPLJA=')
w(t,'ok-consistency',json.dumps({'consistency':[b64(root),b64(root)]}).encode())
w(t,'bad-consistency-short-hash',b'{"consistency":["AAAA"]}')
w(t,'ok-proof-by-hash',json.dumps({'leaf_index':5,'audit_path':[b64(root)]}).encode())
w(t,'bad-proof-by-hash-negative',b'{"leaf_index":-5,"audit_path":[]}')
w(t,'ok-roots-testlog-ca',json.dumps({'certificates':[b64(pem(D+'testlog/ca-cert.pem'))]}).encode())
w(t,'bad-roots-not-a-list',b'{"certificates":"MAA="}')
w(t,'ok-tile-path-data-partial','tile/data/x001/x234/067.p/8'.encode())
w(t,'ok-tile-path-level0','tile/0/003'.encode())
w(t,'bad-tile-path-noncanonical','tile/0/x000/003'.encode())
w(t,'bad-tile-path-width-256','tile/0/003.p/256'.encode())
# trim fuzzer-found files: the 90 smallest per target
for t in ['ct_tls_structures','ct_checkpoint','ct_identifiers','ct_responses']:
    fs=[f for f in os.listdir(C+t) if not (f.startswith('ok-') or f.startswith('bad-'))]
    fs.sort(key=lambda f:(os.path.getsize(C+t+'/'+f),f))
    for f in fs[90:]:
        os.remove(C+t+'/'+f)
