" compart protocols: *.ded
autocmd BufRead,BufNewFile *.ded setfiletype compart
